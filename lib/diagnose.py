"""Why did a gradient check fail? An evidence-based diagnosis of a forward/backward pair.

`diagnose(forward, backward, x, grad_output)` runs the check that
`lib.gradcheck.check_gradient` runs, then gathers cheap evidence about the
pair and names the most likely cause:

    code                      what the evidence looks like
    ok                        the check passes and nothing else is wrong
    nondeterministic-forward  forward at the same x gives different outputs
    mask-mismatch             backward is a correct dropout-style gradient,
                              but under a different keep/drop pattern
    wrong-backward            backward is not the forward's vector-Jacobian
                              product (a constant factor, identity, ignoring
                              or mishandling grad_output, or no pattern)
    precision                 the mismatch disappears with the realised step,
                              the dtype-aware step, or in float64
    input-mutation            forward or backward writes into an array it is given

The evidence, all from calls of the user's own functions:

1. Determinism: forward at the same x, three times (before and after all the
   other calls), compared bit for bit; backward twice with the same arguments.
2. Mutation: every call gets a private copy, compared with the original after
   the call. The caller's arrays are never passed in, so never changed.
3. Probes: besides the user's grad_output, two random ones (from a Generator
   seeded by `seed`). A backward that ignores grad_output passes a check with
   all ones, but not one with random weights. Linearity is tested exactly:
   backward(-2 g) must equal -2 backward(g), since scaling by -2 is exact in
   binary floating point.
4. One central-difference pass yields the numerical gradient for all probes
   at once, and, when forward maps n elements to n elements, its local slopes
   d out_i / d x_i and whether any other output moved (elementwise or not).
5. Precision: if the check fails, it is repeated with the realised step (free:
   the same differences), with the dtype-aware step (if `eps` was given), and
   in float64 (x upcast). A mismatch that vanishes there is rounding.
6. Attribution of a real error, in float64 where possible: the forward's local
   slopes give its keep pattern (zero vs nonzero slope), the backward's slopes
   (backward(r) / r) give the backward's. Equal patterns with a constant ratio
   mean a wrong factor; dropout-like patterns with the same scale but
   different support mean a mask mismatch. When no pattern fits, the worst
   element is differenced again at half the step: a change that does not
   shrink is a jump (a mask that depends on x's values, or a discontinuity).

The cost is one dense check (2 forward calls per element of x), plus one or
two more when the check fails, plus at most 7 forward calls at single points
and 5 backward calls per dense pass.
"""

from __future__ import annotations

import contextvars
import html
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from lib import _checks
from lib.gradcheck import GradCheckResult, build_result, default_step, tolerance_for

#: Every code a Finding can carry, in the order of the table above.
CODES = ("ok", "nondeterministic-forward", "mask-mismatch", "wrong-backward", "precision", "input-mutation")

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
        "H4: the mismatch is rounding in the finite difference, within the budget of the "
        "dtype and step; the gradient formula is right"
    ),
    "input-mutation": "checker/test: forward or backward writes into an array it is given",
}

DIVIDE_BY = ("realised", "nominal")

# Relative agreement that float64 central differences at the dtype-aware step
# reach with ease (~1e-10); a float64 mismatch below it is a tolerance set
# tighter than finite differences can resolve, not a wrong gradient.
_FLOAT64_BUDGET = 1e-6

# How exactly two backward results must agree to count as "the same"
# (ignoring grad_output) or "linear" (backward(-2 g) == -2 backward(g)).
# Scaling by -2 is exact, so a linear backward meets this to the last bit.
_EXACT = 1e-9

# Set while a diagnosis runs, so that a check_gradient called from inside the
# user's functions does not start a second diagnosis of its own.
_ACTIVE: contextvars.ContextVar[bool] = contextvars.ContextVar("lib_diagnose_active", default=False)


@dataclass(frozen=True)
class Finding:
    """One possible cause, with the numbers that point to it.

    Attributes:
        code: one of CODES.
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
        eps = "dtype-aware" if s.get("eps") is None else f"{s['eps']:g}"
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


def _finding(code: str, evidence: str, suggestion: str) -> Finding:
    return Finding(code, HYPOTHESES[code], evidence, suggestion)


class _Unavailable(Exception):
    """A supplementary pass could not run (forward refused the dtype, non-finite output)."""


# --------------------------------------------------------------------------
# Calling the user's functions: private copies, counted, mutation recorded.
# --------------------------------------------------------------------------


class _Session:
    def __init__(self, forward, backward):
        self.forward_fn, self.backward_fn = forward, backward
        self.forward_calls = self.backward_calls = 0
        # (who, which array, changed elements, size, flat index, before, after) of the first mutation
        self.mutations: dict[tuple[str, str], tuple[int, int, int, float, float]] = {}
        self.out_shape: tuple | None = None

    def _record(self, who: str, what: str, before: np.ndarray, after: np.ndarray) -> None:
        if (who, what) in self.mutations or np.array_equal(before, after, equal_nan=True):
            return
        changed = np.flatnonzero(~((before == after) | (np.isnan(before) & np.isnan(after))))
        i = int(changed[0]) if changed.size else 0
        self.mutations[(who, what)] = (
            int(changed.size), int(before.size), i, float(before.reshape(-1)[i]), float(after.reshape(-1)[i])
        )

    def forward(self, x: np.ndarray, strict: bool = True) -> np.ndarray:
        """forward on a private copy of x -> float64 copy of its output."""
        arg = x.copy()
        self.forward_calls += 1
        try:
            raw = self.forward_fn(arg)
            # Copy at once: an output that is a view of `arg` must not change later.
            out = np.array(raw, dtype=np.float64)
        except Exception as error:
            if strict:
                raise
            raise _Unavailable(f"forward raised {type(error).__name__}: {error}") from error
        self._record("forward", "x", x, arg)
        if self.out_shape is not None and out.shape != self.out_shape:
            if strict:
                raise ValueError(
                    f"forward returned shape {out.shape} on a perturbed input but {self.out_shape} on x"
                )
            raise _Unavailable(f"forward returned shape {out.shape}, not {self.out_shape}")
        if not np.all(np.isfinite(out)):
            if strict:
                raise ValueError(
                    "forward(x) returned non-finite values (inf or NaN); the check needs finite outputs"
                )
            raise _Unavailable("forward returned non-finite values")
        return out

    def backward(self, g: np.ndarray, x: np.ndarray, strict: bool = True) -> np.ndarray:
        """backward on private copies of (g, x) -> float64 copy of grad_x, x's shape."""
        g_arg, x_arg = g.copy(), x.copy()
        self.backward_calls += 1
        try:
            grad = np.array(self.backward_fn(g_arg, x_arg), dtype=np.float64)
        except Exception as error:
            if strict:
                raise
            raise _Unavailable(f"backward raised {type(error).__name__}: {error}") from error
        self._record("backward", "x", x, x_arg)
        self._record("backward", "grad_output", g, g_arg)
        if grad.shape != x.shape:
            raise ValueError(f"backward must return an array of x's shape {x.shape}; got {grad.shape}")
        return grad


# --------------------------------------------------------------------------
# One central-difference pass: numerical gradients for several probes at once.
# --------------------------------------------------------------------------


@dataclass
class _Pass:
    """Everything one pass measured. k probes, n = x.size, all float64.

    analytical, numerical, realised: (k, n); `numerical` is divided the way
    this pass's check divides, `realised` always by the realised step.
    slope: (n,) d out_i / d x_i (realised step) when out.size == n, else None;
    cross: (n,) max |d out_j / d x_i| over j != i, same condition.
    homogeneous: (n,) backward(-2 r1) for the first random probe r1.
    repeat: (n,) backward(r1) called a second time with identical arguments.
    x: the input of this pass (x, or x upcast to float64).
    """

    label: str
    dtype: np.dtype
    probes: np.ndarray
    analytical: np.ndarray
    numerical: np.ndarray
    realised: np.ndarray
    half: np.ndarray
    width: np.ndarray
    slope: np.ndarray | None
    cross: np.ndarray | None
    homogeneous: np.ndarray
    repeat: np.ndarray
    x: np.ndarray
    rtol: float
    atol: float

    def ratios(self, which: str = "numerical") -> np.ndarray:
        """(k, n) |a - n| / tolerance; NaN (a zero-width step) counts as a failure."""
        a, n = self.analytical, getattr(self, which)
        tol = tolerance_for(a, n, self.rtol, self.atol)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.abs(a - n) / tol
        r[(a == n) & (tol == 0)] = 0.0
        r[np.isnan(r)] = np.inf
        return r

    def trial(self, which: str = "numerical", setting: str | None = None) -> Trial:
        r = self.ratios(which).max(axis=1)
        return Trial(setting or self.label, float(r[0]), float(r[1:].max()))

    def passes(self, which: str = "numerical") -> np.ndarray:
        """(k,) True where the probe's check passes."""
        return np.all(self.ratios(which) <= 1.0, axis=1)


def _probe_arrays(grad_output: np.ndarray, randoms: np.ndarray, dtype: np.dtype) -> list[np.ndarray]:
    # The caller's grad_output goes to backward as given (check_gradient does
    # the same); random probes in x's dtype, as an upstream layer would send.
    return [grad_output, *(np.asarray(r, dtype=dtype) for r in randoms)]


def _run_pass(session: _Session, label: str, x: np.ndarray, probes: list[np.ndarray], half: np.ndarray,
              divide_by: str, rtol: float, atol: float, strict: bool) -> _Pass:
    n = x.size
    cast = x.dtype.type
    weights = np.stack([np.asarray(p, dtype=np.float64).reshape(-1) for p in probes])  # (k, m)
    k, m = weights.shape
    numerical = np.empty((k, n))
    realised = np.empty((k, n))
    width = np.empty(n)
    elementwise_shape = m == n
    slope = np.empty(n) if elementwise_shape else None
    cross = np.empty(n) if elementwise_shape else None
    flat_x, flat_half = x.reshape(-1), half.reshape(-1)
    for i in range(n):
        value = float(flat_x[i])
        plus, minus = cast(value + flat_half[i]), cast(value - flat_half[i])
        w = float(plus) - float(minus)  # exact: both are values of x's dtype
        if w == 0.0 and divide_by == "realised":
            raise ValueError(
                f"eps={flat_half[i]:g} is too small for {x.dtype} at index {i} (x={value:g}): "
                f"x+eps and x-eps round to the same value; use eps >= {float(np.spacing(abs(flat_x[i]))):.3g}"
            )
        work = x.copy()
        work.reshape(-1)[i] = plus
        out_plus = session.forward(work, strict)
        work = x.copy()
        work.reshape(-1)[i] = minus
        out_minus = session.forward(work, strict)
        # Subtract element by element before weighting, so that large equal
        # terms cancel exactly instead of inside a rounded sum.
        d = (out_plus - out_minus).reshape(-1)
        projected = weights @ d
        numerical[:, i] = projected / (w if divide_by == "realised" else 2.0 * flat_half[i])
        realised[:, i] = projected / w if w else np.nan
        width[i] = w
        if elementwise_shape:
            slope[i] = d[i] / w if w else np.nan
            own, d[i] = d[i], 0.0
            cross[i] = np.max(np.abs(d)) / w if w else np.nan
            d[i] = own
    analytical = np.stack([session.backward(p, x, strict).reshape(-1) for p in probes])
    # -2 r1 is exact in any binary float dtype, so a linear backward meets it bit for bit.
    homogeneous = session.backward(np.asarray(probes[1] * probes[1].dtype.type(-2)), x, strict).reshape(-1)
    repeat = session.backward(probes[1], x, strict).reshape(-1)
    return _Pass(label, x.dtype, weights, analytical, numerical, realised, flat_half.copy(), width,
                 slope, cross, homogeneous, repeat, x, rtol, atol)


# --------------------------------------------------------------------------
# Reading the evidence.
# --------------------------------------------------------------------------


def _two_level(v: np.ndarray, rel: float):
    """If v holds only 0 and one constant c (to within rel), return (support, c); else None."""
    if not np.all(np.isfinite(v)):
        return None
    scale = float(np.max(np.abs(v)))
    if scale == 0.0:
        return np.zeros(v.shape, dtype=bool), 0.0
    support = np.abs(v) > rel * scale
    c = float(np.median(v[support]))
    if np.all(np.abs(v[support] - c) <= rel * abs(c)):
        return support, c
    return None


def _same(a: np.ndarray, b: np.ndarray, rel: float) -> np.ndarray:
    scale = max(float(np.max(np.abs(a))), float(np.max(np.abs(b))), 1e-300)
    return np.abs(a - b) <= rel * np.maximum(np.abs(a), np.abs(b)) + _EXACT * scale


def _pattern_tolerance(dtype: np.dtype) -> float:
    # How far apart two slopes may be and still count as equal: float64
    # central differences at the dtype-aware step are good to ~1e-10; other
    # dtypes are noisier by their rounding over the step.
    return 1e-6 if dtype == np.float64 else 1e-3


def _dropout_factor_name(k: float, c_forward: float) -> str | None:
    """Name the ratio backward/forward scale for a dropout with scale c = 1/(1-p)."""
    if not c_forward > 1.0:
        return None
    p = 1.0 - 1.0 / c_forward
    candidates = (
        (1.0 - p, "1-p", "misses the 1/(1-p) factor (multiplies by the mask only)"),
        ((1.0 - p) / p, "(1-p)/p", "scales by 1/p instead of 1/(1-p)"),
        ((1.0 - p) ** 2, "(1-p)^2", "multiplies by (1-p) instead of dividing by it"),
        (p * (1.0 - p), "p(1-p)", "multiplies by p instead of dividing by (1-p)"),
        (c_forward, "1/(1-p)", "applies the 1/(1-p) factor twice"),
        (-1.0, "-1", "flips the sign"),
        (-(1.0 - p), "-(1-p)", "flips the sign and misses the 1/(1-p) factor"),
    )
    for value, symbol, meaning in candidates:
        if abs(k - value) <= 1e-3 * abs(value):
            return (f"that is {symbol} for p = {p:.3f} (read from the forward's scale 1/(1-p) = "
                    f"{c_forward:.5g}): the backward {meaning}")
    return None


def _generic_factor_name(k: float) -> str:
    if abs(k + 1.0) <= 1e-3:
        return "the backward flips the sign"
    return f"the backward is off by the constant factor {k:.4g}"


def _mask_relation(forward_keep: np.ndarray, backward_keep: np.ndarray, shape: tuple) -> str:
    f, b = forward_keep.reshape(shape), backward_keep.reshape(shape)
    if np.array_equal(b, ~f):
        return "the backward's pattern is the forward's inverted (keeps exactly what the forward drops)"
    for s in (1, -1, 2, -2, 3, -3):
        if np.array_equal(np.roll(f.reshape(-1), s), b.reshape(-1)):
            return f"the backward's pattern is the forward's shifted by {s:+d} position(s) in flat order"
        for axis in range(f.ndim) if f.ndim > 1 else ():
            if np.array_equal(np.roll(f, s, axis=axis), b):
                return f"the backward's pattern is the forward's shifted by {s:+d} along axis {axis}"
    if f.ndim == 2 and f.shape[0] == f.shape[1] and np.array_equal(f.T, b):
        return "the backward's pattern is the forward's transposed"
    if f.ndim == 4 and f.shape[2] * f.shape[3] > 1:
        f_channel = np.all(f == f[:, :, :1, :1], axis=(2, 3)).all()
        b_channel = np.all(b == b[:, :, :1, :1], axis=(2, 3)).all()
        if f_channel and not b_channel:
            return ("the forward drops whole channels (one decision per (n, c)) but the backward's "
                    "pattern varies within channels: an element mask used for channel dropout")
        if b_channel and not f_channel:
            return ("the backward drops whole channels but the forward drops single elements: "
                    "a channel mask used for element dropout")
    agree = float(np.mean(f == b))
    return (f"no simple relation (they agree on {100 * agree:.0f}% of elements, as two independent "
            "draws would): a mask from another draw, such as another seed, a stale mask from an earlier "
            "call, or a name rebound after the backward was defined")


def _worst(pass_: _Pass, probe: int) -> str:
    r = pass_.ratios()[probe]
    i = int(np.argmax(r))
    bad = int(np.sum(r > 1.0))
    return (f"{bad}/{r.size} elements out of tolerance; worst at flat index {i}: "
            f"a = {pass_.analytical[probe, i]:.6g}, n = {pass_.numerical[probe, i]:.6g}")


def _explain(session: _Session, pass_: _Pass, x_shape: tuple, user_failed: bool, note: str) -> list[Finding]:
    """Attribute a mismatch that rounding does not explain: mask-mismatch or wrong-backward."""
    a, probes = pass_.analytical, pass_.probes
    rel = _pattern_tolerance(pass_.dtype)
    where = f" (measured in {pass_.dtype}{note})"
    random_failed = not bool(np.all(pass_.passes()[1:]))
    if user_failed:
        context = ""
    else:
        context = (f"passes with your grad_output but not with random ones (max error/tolerance "
                   f"{pass_.trial().random:.3g}); ")

    if not np.all(np.isfinite(a)):
        bad = int(np.sum(~np.isfinite(a[0])))
        return [_finding("wrong-backward", f"{context}backward returns non-finite values at {bad}/{a.shape[1]} "
                         f"elements{where}", "find the division by zero or overflow in the backward")]

    # Same arguments, different result: the backward draws something anew per call.
    if not np.all(_same(pass_.repeat, a[1], 0.0)):
        differ = int(np.sum(~_same(pass_.repeat, a[1], 0.0)))
        flips = int(np.sum((pass_.repeat == 0) != (a[1] == 0)))
        if flips:
            return [_finding(
                "mask-mismatch",
                f"{context}backward gives different gradients on two calls with identical arguments "
                f"({differ}/{a.shape[1]} elements differ; {flips} switch between zero and nonzero): it draws "
                f"its own mask on every call instead of using the forward's{where}",
                "pass the backward the mask the forward returned; never draw a mask in the backward",
            )]
        return [_finding(
            "wrong-backward",
            f"{context}backward gives different gradients on two calls with identical arguments "
            f"({differ}/{a.shape[1]} elements differ, by up to {np.max(np.abs(pass_.repeat - a[1])):.3g}){where}",
            "make the backward deterministic (no random draws, no state that changes between calls)",
        )]

    # A backward that ignores grad_output returns the same array for every probe.
    if np.all(_same(a[1], a[2], 0.0)) and not np.all(_same(probes[1], probes[2], 0.0)):
        return [_finding(
            "wrong-backward",
            f"{context}backward ignores grad_output: it returned the same gradient for two different "
            f"random grad_outputs (max difference {np.max(np.abs(a[1] - a[2])):.3g}){where}",
            "multiply by grad_output: grad_x = grad_output * d out / d x (an all-ones grad_output hides this)",
        )]

    # Exact homogeneity test: scaling grad_output by -2 must scale grad_x by -2.
    linear = _same(pass_.homogeneous, -2.0 * a[1], 1e-6)
    if not np.all(linear):
        return [_finding(
            "wrong-backward",
            f"{context}backward is not linear in grad_output: backward(-2 g) != -2 backward(g) at "
            f"{int(np.sum(~linear))}/{linear.size} elements{where}",
            "the vector-Jacobian product is linear in grad_output: no squares, abs, clipping or "
            "constants applied to grad_output",
        )]

    if a.shape[1] == probes.shape[1] and all(np.all(_same(a[j], probes[j], rel)) for j in (1, 2)):
        return [_finding(
            "wrong-backward",
            f"{context}backward returns grad_output unchanged at all {a.shape[1]} elements, "
            f"for two random grad_outputs{where}; {_worst(pass_, 0 if user_failed else 1)}",
            "apply the forward's local derivative: grad_x = grad_output * d out / d x",
        )]

    findings = _explain_elementwise(pass_, x_shape, rel, context, where)
    if findings:
        return findings

    jump = _jump(session, pass_)
    if jump is not None:
        return [jump]

    # Not elementwise (or no pattern there): a constant ratio a/n over all probes?
    n = pass_.realised
    big = np.abs(n) > rel * max(float(np.max(np.abs(n))), 1e-300)
    if np.any(big):
        ratio = a[big] / n[big]
        k = float(np.median(ratio))
        small_ok = np.all(np.abs(a[~big]) <= rel * float(np.max(np.abs(a))) + 1e-300)
        if k != 0 and np.all(np.abs(ratio - k) <= 10 * rel * abs(k)) and small_ok and abs(k - 1) > rel:
            return [_finding(
                "wrong-backward",
                f"{context}a/n = {k:.4g} on all {int(big.sum())} probe-elements with a nonzero numerical "
                f"gradient{where}: {_generic_factor_name(k)}",
                f"remove the stray factor {k:.4g} from the backward",
            )]
    probe = 0 if user_failed or not random_failed else 1
    which = "your grad_output" if probe == 0 else "a random grad_output"
    return [_finding(
        "wrong-backward",
        f"{context}for {which}, {_worst(pass_, probe)}{where}; forward deterministic, no keep "
        "pattern and no constant ratio explain it",
        "re-derive the backward's chain-rule step; compare it column by column with "
        "lib.gradcheck.numerical_gradient on a small input",
    )]


def _explain_elementwise(pass_: _Pass, x_shape: tuple, rel: float, context: str, where: str) -> list[Finding]:
    """Local slopes of forward and backward compared element by element; [] if not applicable."""
    if pass_.slope is None or not np.all(np.isfinite(pass_.slope)):
        return []
    f = pass_.slope
    if float(np.max(pass_.cross)) > 1e-9 * max(float(np.max(np.abs(f))), 1e-300):
        return []  # some output moved when another element of x did: not elementwise
    a, probes = pass_.analytical, pass_.probes
    # The backward's slope at i is a_i / r_i for either random probe r; divide
    # by the larger of the two so that no element leans on a near-zero weight,
    # and require the two readings to agree where both are usable (a backward
    # that mixes elements gives different readings).
    r1, r2 = np.abs(probes[1]), np.abs(probes[2])
    floor = 1e-3 * max(float(np.max(r1)), float(np.max(r2)))
    if np.any(np.maximum(r1, r2) <= floor):
        return []
    with np.errstate(divide="ignore", invalid="ignore"):
        b1, b2 = a[1] / probes[1], a[2] / probes[2]
    both = (r1 > floor) & (r2 > floor)
    if not np.all(_same(b1[both], b2[both], 10 * rel)):
        return []  # the backward mixes elements: its slopes are not a diagonal
    b = np.where(r1 >= r2, b1, b2)
    n = f.size
    ff, fb = _two_level(f, rel), _two_level(b, rel)
    if ff is not None and fb is not None:
        keep_f, c_f = ff
        keep_b, c_b = fb
        if not keep_b.any():
            return [_finding("wrong-backward", f"{context}backward returns zeros while the forward keeps "
                             f"{int(keep_f.sum())}/{n} elements{where}",
                             "apply grad_output * mask / (1 - p) instead of zeros")]
        if np.array_equal(keep_f, keep_b) and c_f != 0:
            k = c_b / c_f
            dropout_name = _dropout_factor_name(k, c_f)
            if keep_f.all():
                head = f"forward and backward have constant slopes ({c_f:.5g} and {c_b:.5g}) on all {n} elements"
            else:
                head = f"forward and backward keep the same {int(keep_f.sum())}/{n} elements"
            return [_finding(
                "wrong-backward",
                f"{context}{head}, but a/n = {k:.3f} on all {int(keep_f.sum())} of them; "
                f"{dropout_name or _generic_factor_name(k)}{where}",
                "scale the backward exactly as the forward: grad_output * mask * (1 / (1 - p))" if dropout_name
                else f"remove the stray factor {k:.4g} from the backward",
            )]
        if keep_b.all() and not keep_f.all():
            return [_finding(
                "wrong-backward",
                f"{context}backward keeps all {n} elements (scale {c_b:.5g}) while the forward drops "
                f"{int((~keep_f).sum())}{where}: the backward applies no mask",
                "multiply by the mask the forward used",
            )]
        relation = _mask_relation(keep_f, keep_b, x_shape)
        fb_only, ff_only = int(np.sum(keep_b & ~keep_f)), int(np.sum(keep_f & ~keep_b))
        evidence = (
            f"{context}forward keeps {int(keep_f.sum())}/{n} elements, backward {int(keep_b.sum())}/{n}; "
            f"they disagree on {fb_only + ff_only} (backward keeps {fb_only} the forward drops, drops "
            f"{ff_only} it keeps); {relation}{where}"
        )
        same_scale = abs(c_b - c_f) <= 10 * rel * abs(c_f)
        scale_text = (f"; both scale kept elements by {c_f:.5g}" if same_scale
                      else f"; kept elements scaled by {c_b:.5g} in the backward, {c_f:.5g} in the forward")
        findings = [_finding(
            "mask-mismatch", evidence + scale_text,
            "give the backward the very mask the forward used (return it from the forward call that is "
            "checked, or draw both from the same seed at the same shape)",
        )]
        if not same_scale and c_f != 0:
            k = c_b / c_f
            name = _dropout_factor_name(k, c_f) or _generic_factor_name(k)
            findings.append(_finding(
                "wrong-backward", f"besides the mask, the kept scale differs: ratio {k:.3f}; {name}",
                "scale the backward exactly as the forward: grad_output * mask * (1 / (1 - p))",
            ))
        return findings
    # Smooth elementwise forward: compare slopes directly.
    big = np.abs(f) > rel * max(float(np.max(np.abs(f))), 1e-300)
    if np.any(big):
        ratio = b[big] / f[big]
        k = float(np.median(ratio))
        if k != 0 and abs(k - 1) > rel and np.all(np.abs(ratio - k) <= 10 * rel * abs(k)):
            return [_finding(
                "wrong-backward",
                f"{context}the forward is elementwise; the backward's slope / forward's slope = {k:.4g} "
                f"on all {int(big.sum())} elements{where}: {_generic_factor_name(k)}",
                f"remove the stray factor {k:.4g} from the backward",
            )]
    wrong = ~_same(b, f, 10 * rel)
    i = int(np.argmax(np.abs(b - f)))
    return [_finding(
        "wrong-backward",
        f"{context}the forward is elementwise; the backward's local slope differs from the forward's at "
        f"{int(wrong.sum())}/{n} elements, with no constant ratio (worst at flat index {i}: backward "
        f"{b[i]:.6g}, forward {f[i]:.6g}){where}",
        "re-derive d out_i / d x_i and evaluate it at the forward's input (not at its output, or vice versa)",
    )]


def _jump(session: _Session, pass_: _Pass) -> Finding | None:
    """Does forward jump between x-eps and x+eps at the worst element? (4 forward calls)

    A smooth forward's output moves in proportion to the step, so halving the
    step halves the change; across a jump the change stays the size of the
    jump. A jump whose zero pattern moves too means the mask itself depends on
    x: the check's +eps and -eps calls use different masks, the
    nondeterministic-forward failure in a form repeated calls at x cannot see.
    """
    r = pass_.ratios()
    probe = 0 if np.any(r[0] > 1.0) else int(np.argmax(r.max(axis=1)))
    i = int(np.argmax(r[probe]))
    cast = pass_.x.dtype.type
    value = float(pass_.x.reshape(-1)[i])
    changes, scale, zero_moves = [], 0.0, 0
    for h in (pass_.half[i], pass_.half[i] / 2):
        outs = []
        for sign in (1.0, -1.0):
            work = pass_.x.copy()
            work.reshape(-1)[i] = cast(value + sign * h)
            try:
                outs.append(session.forward(work, strict=False).reshape(-1))
            except _Unavailable:
                return None
        changes.append(float(np.max(np.abs(outs[0] - outs[1]))))
        scale = max(scale, float(np.max(np.abs(outs[0]))), float(np.max(np.abs(outs[1]))))
        moved = (outs[0] == 0) != (outs[1] == 0)
        if moved.size == pass_.x.size:
            moved[i] = False  # element i's own output may cross zero (a kink), others must not move
        zero_moves = max(zero_moves, int(moved.sum()))
    # The change must be a visible part of the output and must not shrink with the step.
    if not (changes[0] > 1e-3 * scale and changes[1] >= 0.8 * changes[0]):
        return None
    text = (f"forward gives identical outputs at the same x, but jumps between x-eps and x+eps: at flat index {i} "
            f"its output changes by up to {changes[0]:.4g} over eps={pass_.half[i]:.3g} and still by "
            f"{changes[1]:.4g} over half that step, where a smooth function's change would halve")
    if zero_moves:
        return _finding(
            "nondeterministic-forward",
            f"{text}; {zero_moves} outputs switch between zero and nonzero: the mask depends on x's values, "
            "so the check's +eps and -eps calls use different masks",
            "draw the mask independently of x's values (a fixed seed, or the mask of the test's own forward call)",
        )
    return _finding(
        "wrong-backward",
        f"{text}: the forward is discontinuous there, so no finite difference can check a gradient at this x",
        "check at points away from the discontinuity (rounding, branches, thresholds), or test the pieces apart",
    )


def _budget_ok(pass_: _Pass) -> tuple[bool, float]:
    """float64 agreement far below any sane tolerance: the tolerance, not the gradient, is wrong."""
    a, n = pass_.analytical, pass_.realised
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(n))):
        return False, np.inf
    scale = max(float(np.max(np.abs(a))), float(np.max(np.abs(n))), 1e-300)
    rel = np.abs(a - n) / (np.abs(a) + np.abs(n) + _EXACT * scale)
    worst = float(np.max(rel))
    return worst <= _FLOAT64_BUDGET, worst


def _precision_finding(first: _Pass, resolved_by: str, resolving: _Pass | None, worst_rel: float,
                       eps) -> Finding:
    before = first.trial().user
    if resolved_by == "realised":
        i = int(np.argmax(first.ratios()[0]))
        two_h = 2.0 * first.half[i]
        after = first.trial("realised").user
        return _finding(
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
        why = (f"x+eps and x-eps round to x itself at {collapsed}/{first.width.size} elements, so the "
               "difference there is 0" if collapsed else
               "rounding noise, about machine eps / eps relative, swamps the difference")
        return _finding(
            "precision",
            f"max error/tolerance {before:.3g} with eps={eps:g}, {after:.3g} with the dtype-aware step "
            f"cbrt(machine eps) * max(1, |x|) (median {typical:.3g}) in {first.dtype}: at eps={eps:g} {why}",
            "use eps=None (a dtype-aware step) and divide by the realised step",
        )
    if resolved_by == "float64":
        after = resolving.trial().user
        return _finding(
            "precision",
            f"max error/tolerance {before:.3g} in {first.dtype}, {after:.3g} for the same check in float64 "
            f"(x upcast, dtype-aware step): the formula is right, {first.dtype} finite differences "
            "are not accurate enough for this tolerance",
            f"check gradients in float64; if the check must run in {first.dtype}, loosen rtol to its "
            "rounding budget (about 1e-2 for float16)",
        )
    return _finding(
        "precision",
        f"max error/tolerance {before:.3g}, yet in float64 at the dtype-aware step analytical and numerical "
        f"agree to {worst_rel:.2g} relative: rtol={first.rtol:g}, atol={first.atol:g} asks for more than "
        "a central difference can resolve",
        "use a tolerance above the finite-difference budget (rtol >= 1e-6 in float64, 1e-3 in float32)",
    )


# --------------------------------------------------------------------------
# The entry point.
# --------------------------------------------------------------------------


def _validated(forward, backward, x, grad_output, rtol, atol, eps, divide_by, seed):
    for name, fn in (("forward", forward), ("backward", backward)):
        if not callable(fn):
            raise TypeError(f"{name} must be callable; got {type(fn).__name__} {fn!r}")
    x = _checks.float_array(x, "x")
    if x.size == 0:
        raise ValueError("x must have at least one element")
    rtol = _checks.non_negative(rtol, "rtol")
    atol = _checks.non_negative(atol, "atol")
    eps = None if eps is None else _checks.positive_step(eps)
    divide_by = _checks.choice(divide_by, "divide_by", DIVIDE_BY)
    seed = _checks.positive_int(seed, "seed", low=0, high=2**63 - 1)
    grad_output = np.asarray(grad_output)
    if not np.issubdtype(grad_output.dtype, np.number) or np.iscomplexobj(grad_output):
        raise TypeError(f"grad_output must be a real numeric array; got dtype {grad_output.dtype}")
    if not np.all(np.isfinite(grad_output)):
        raise ValueError("grad_output must be finite")
    return x.copy(), grad_output.copy(), rtol, atol, eps, divide_by, seed


def diagnose(forward, backward, x, grad_output, *, rtol=1e-3, atol=1e-6, eps=None,
             divide_by="realised", seed=0) -> Diagnosis:
    """Run a gradient check and say why it fails (or why a pass is not to be trusted).

    Args:
        forward: forward(x) -> y, an array of any shape.
        backward: backward(grad_output, x) -> grad_x, x's shape.
        x: floating array (float16/32/64), shape S, at least one element; never modified.
        grad_output: real array of y's shape; the check's loss is sum(y * grad_output).
        rtol, atol: pass rule |a - n| <= atol + rtol * max(|a|, |n|), as check_gradient.
        eps: half-step; None picks the dtype-aware step cbrt(machine eps) * max(1, |x|).
        divide_by: "realised" (x+ - x- as stored, like check_gradient) or "nominal"
            (2*eps, like the original checker).
        seed: seeds the Generator for the two random grad_output probes, so that a
            diagnosis is repeatable.

    Returns:
        Diagnosis: `.passed`, `.result` (GradCheckResult of the plain check with
        your grad_output and settings), `.findings` ranked with the primary cause
        first. Costs one dense check (2 forward calls per element), plus up to two
        more when the check fails, plus at most 7 forward calls at single points
        and 5 backward calls per dense pass.

    Raises:
        TypeError / ValueError for bad arguments, a backward of the wrong shape, or
        a forward with non-finite output at x; errors raised by forward or backward
        propagate.
    """
    x, grad_output, rtol, atol, eps, divide_by, seed = _validated(
        forward, backward, x, grad_output, rtol, atol, eps, divide_by, seed)
    token = _ACTIVE.set(True)
    try:
        return _diagnose(forward, backward, x, grad_output, rtol, atol, eps, divide_by, seed)
    finally:
        _ACTIVE.reset(token)


def _diagnose(forward, backward, x, grad_output, rtol, atol, eps, divide_by, seed) -> Diagnosis:
    session = _Session(forward, backward)
    out_first = session.forward(x)
    if grad_output.shape != out_first.shape:
        raise ValueError(f"grad_output must have the shape of forward(x), {out_first.shape}; "
                         f"got {grad_output.shape}")
    session.out_shape = out_first.shape
    out_second = session.forward(x)

    rng = np.random.default_rng(seed)
    randoms = rng.standard_normal((2, *out_first.shape))
    probes = _probe_arrays(grad_output, randoms, x.dtype)
    half = default_step(x) if eps is None else np.full(x.shape, eps)
    eps_text = "dtype-aware step" if eps is None else f"eps={eps:g}"
    divide_text = "nominal 2*eps" if divide_by == "nominal" else "realised step"
    first = _run_pass(session, f"{x.dtype}, {eps_text}, {divide_text}", x, probes, half, divide_by, rtol, atol,
                      strict=True)
    out_after = session.forward(x)
    forward_calls_plain = 2 * x.size + 1

    x_changed = ("forward", "x") in session.mutations or ("backward", "x") in session.mutations
    divisor = first.width if divide_by == "realised" else 2.0 * first.half
    result = build_result(first.analytical[0].reshape(x.shape), first.numerical[0].reshape(x.shape),
                          divisor.reshape(x.shape), dtype=x.dtype, rtol=rtol, atol=atol,
                          divide_by=divide_by, forward_calls=forward_calls_plain, input_mutated=x_changed)

    findings: list[Finding] = _mutation_findings(session)
    trials = [first.trial()]

    nondeterminism = _nondeterminism(out_first, out_second, out_after)
    if nondeterminism is not None:
        findings.append(nondeterminism)
        return _finish(result, findings, trials, session, rtol, atol, eps, divide_by, seed, first)

    user_failed = not bool(first.passes()[0])
    best, best_which = first, "numerical"
    resolved_by, resolving = None, None
    if divide_by == "nominal" and not np.all(first.passes()):
        best_which = "realised"
        trials.append(first.trial("realised", f"{x.dtype}, {eps_text}, realised step"))
        if user_failed and first.passes("realised")[0]:
            resolved_by = "realised"
    unavailable = ""
    if not np.all(best.passes(best_which)) and eps is not None:
        best = _run_pass(session, f"{x.dtype}, dtype-aware step, realised step", x, probes,
                         default_step(x), "realised", rtol, atol, strict=True)
        best_which = "numerical"
        trials.append(best.trial())
        if user_failed and resolved_by is None and best.passes()[0]:
            resolved_by, resolving = "default step", best
    worst_rel = np.nan
    if not np.all(best.passes(best_which)) and x.dtype != np.float64:
        x64 = x.astype(np.float64)
        probes64 = [np.asarray(p, dtype=np.float64) for p in probes]
        try:
            wide = _run_pass(session, "float64, dtype-aware step, realised step", x64, probes64,
                             default_step(x64), "realised", rtol, atol, strict=False)
        except _Unavailable as why:
            unavailable = f"; float64 check unavailable: {why}"
        else:
            best, best_which = wide, "numerical"
            trials.append(best.trial())
            if user_failed and resolved_by is None and best.passes()[0]:
                resolved_by, resolving = "float64", best
    real_error = not np.all(best.passes(best_which))
    if real_error and best.dtype == np.float64:
        within, worst_rel = _budget_ok(best)
        if within:
            real_error = False
            if user_failed and resolved_by is None:
                resolved_by, resolving = "budget", best

    if real_error:
        if best_which == "realised":
            best = _Pass(**{**best.__dict__, "numerical": best.realised})
        findings.extend(_explain(session, best, x.shape, bool(not best.passes()[0]), unavailable))
    if user_failed and resolved_by is not None:
        findings.append(_precision_finding(first, resolved_by, resolving, worst_rel, eps))
    elif user_failed and not real_error:
        # Unreachable by construction (a failure is either resolved or real);
        # kept so that a failing check can never come back as "ok".
        findings.append(_finding("wrong-backward", _worst(first, 0), "inspect the failing elements"))
    return _finish(result, findings, trials, session, rtol, atol, eps, divide_by, seed, first)


def _mutation_findings(session: _Session) -> list[Finding]:
    findings = []
    for (who, what), (changed, size, i, before, after) in session.mutations.items():
        if who == "forward":
            why = ("a checker perturbs x and restores only the element it changed, so every later "
                   "difference is taken at a corrupted point")
        elif what == "x":
            why = "the caller's x (and any checker's working copy) silently changes"
        else:
            why = "grad_output is often shared with other layers, which then see the changed values"
        findings.append(_finding(
            "input-mutation",
            f"{who} changed {changed}/{size} elements of the {what} it was given "
            f"(first at flat index {i}: {before:.6g} -> {after:.6g}); {why}",
            f"compute into a new array in the {who} (out = x * m, not x *= m; no out= pointing at an argument)",
        ))
    return findings


def _nondeterminism(*outs: np.ndarray) -> Finding | None:
    base = outs[0]
    differs = np.zeros(base.shape, dtype=bool)
    zero_flips = np.zeros(base.shape, dtype=bool)
    for other in outs[1:]:
        differs |= ~((base == other) | (np.isnan(base) & np.isnan(other)))
        zero_flips |= (base == 0) != (other == 0)
    if not differs.any():
        return None
    spread = max(float(np.max(np.abs(o - base))) for o in outs[1:])
    masks = (f"; the set of zero outputs changes in {int(zero_flips.sum())} elements, as a fresh "
             "dropout mask on each call would" if zero_flips.any() else "")
    return _finding(
        "nondeterministic-forward",
        f"outputs of {len(outs)} calls at the same x differ in {int(differs.sum())}/{differs.size} "
        f"elements (max difference {spread:.3g}){masks}",
        "make the forward a function of x alone: draw the mask from a fixed seed on every call (not "
        "seed=0 or None, not a shared or global generator), or use the mask of the test's own forward "
        "call; keep running statistics frozen during the check",
    )


def _finish(result, findings, trials, session, rtol, atol, eps, divide_by, seed, first) -> Diagnosis:
    if not findings:
        t = first.trial()
        findings = [_finding(
            "ok",
            f"max error/tolerance {t.user:.3g} for your grad_output and {t.random:.3g} for 2 random ones; "
            "forward gave identical outputs on 3 calls at x; no argument was changed",
            "nothing to fix",
        )]
    return Diagnosis(
        result=result,
        findings=findings,
        trials=tuple(trials),
        forward_calls=session.forward_calls,
        backward_calls=session.backward_calls,
        settings={"rtol": rtol, "atol": atol, "eps": eps, "divide_by": divide_by, "seed": seed},
    )


def failure_lines(forward, backward, x, grad_output, **settings) -> list[str]:
    """The diagnosis as lines for a failure message; [] when called inside a diagnosis.

    check_gradient appends these to its GradientCheckError. Inside a running
    diagnosis (a checked function that itself runs a failing check) it returns
    nothing, so diagnoses never nest.
    """
    if _ACTIVE.get():
        return []
    return diagnose(forward, backward, x, grad_output, **settings).lines()
