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
                              the dtype-aware step, or in float64, and is
                              either within the finite-difference budget of
                              the dtype and step (rounding) or, with no jump
                              within the step, truncation at a kink or bend
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
   in float64 (x upcast). A mismatch that vanishes with the realised step is
   rounding of x+eps and x-eps. One that vanishes at another step or in
   float64 is rounding only if the failing pass missed by no more than a few
   times its budget: machine eps times the size of the outputs that moved,
   over the step, plus a smooth function's truncation error. Beyond that the
   other pass only used a step that misses what this one straddles: the
   worst element is searched for a jump (below); with none, it is truncation
   at a step too coarse for the forward (a kink, or sharp curvature).
6. Attribution of a real error, in float64 where possible. First the
   probe-based tests of the backward (repeatable, depends on grad_output
   unless it is all zeros, linear, not the identity), then a search for a jump
   in the forward at the worst element, since one difference quotient across
   a jump makes every slope meaningless: the step is bisected towards the
   half that holds the larger change; a continuous function's change soon
   splits between the halves, a jump's never does (a mask that depends on
   x's values if other outputs switch between zero and nonzero across it,
   else a discontinuity). Then the forward's local slopes give its keep
   pattern (zero vs nonzero slope), the backward's slopes (backward(r) / r)
   give the backward's. Equal patterns with a constant ratio mean a wrong
   factor; dropout-like patterns with the same scale but different support
   mean a mask mismatch.

The cost is one dense check (2 forward calls per element of x), plus one or
two more when the check fails, plus at most 17 forward calls at single points
(3 at x, up to 14 in one jump search) and 5 backward calls per dense pass.
"""

from __future__ import annotations

import contextvars
import html
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from lib import _checks
from lib.gradcheck import GradCheckResult, build_result, default_step, tolerance_for
from lib.gradcheck.differences import numeric_output, require_finite

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
        "H4: finite-difference error of the check (rounding or truncation at this step), "
        "not a wrong gradient"
    ),
    "input-mutation": "checker/test: forward or backward writes into an array it is given",
}

DIVIDE_BY = ("realised", "nominal")

# A failure that another step or float64 resolves counts as rounding only
# when it is within this many times its finite-difference budget (see
# _budget_excess). Correct pairs in float16 and float32 stay below 4 (the
# catalogue's precision entries below 1); a unit jump inside float32's step
# misses by ~4e4, a kink by ~1e4, tanh(50 x) by ~1e3.
_BUDGET_MULTIPLE = 10.0

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
            raw = numeric_output(self.forward_fn(arg), "forward")
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
            grad = np.array(numeric_output(self.backward_fn(g_arg, x_arg), "backward"), dtype=np.float64)
        except Exception as error:
            if strict:
                raise
            raise _Unavailable(f"backward raised {type(error).__name__}: {error}") from error
        self._record("backward", "x", x, x_arg)
        self._record("backward", "grad_output", g, g_arg)
        if grad.shape != x.shape:
            raise ValueError(f"backward must return an array of x's shape {x.shape}; it returned an array of "
                             f"shape {grad.shape}")
        return grad


# --------------------------------------------------------------------------
# One central-difference pass: numerical gradients for several probes at once.
# --------------------------------------------------------------------------


@dataclass
class _Pass:
    """Everything one pass measured. k probes, n = x.size, all float64.

    analytical, numerical, realised: (k, n); `numerical` is divided the way
    this pass's check divides, `realised` always by the realised step.
    noise: (k, n) how far rounding of the forward's outputs alone can move
    `realised`: machine eps of x's dtype times the probe-weighted size of
    the outputs that changed, over the realised step (inf where x+eps and
    x-eps round to the same value).
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
    noise: np.ndarray
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
    noise = np.empty((k, n))
    unit = float(np.finfo(x.dtype).eps)
    abs_weights = np.abs(weights)
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
        # Outputs computed identically on both sides cancel exactly; each output
        # that changed carries a rounding error of about one unit of its size.
        # So does x_i's own output (which may round to the same value on both
        # sides), and every output when none changed.
        counted = d != 0.0
        if elementwise_shape:
            counted[i] = True
        if not counted.any():
            counted[:] = True
        size = np.where(counted, np.maximum(np.abs(out_plus), np.abs(out_minus)).reshape(-1), 0.0)
        noise[:, i] = unit * (abs_weights @ size) / w if w else np.inf
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
    return _Pass(label, x.dtype, weights, analytical, numerical, realised, noise, flat_half.copy(), width,
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
    # All zeros is the same for every probe too, but legitimately so (the
    # zero map is linear): whether zero is the right gradient is for the
    # forward's slopes to say, below.
    zero = not np.any(a)
    if not zero and np.all(_same(a[1], a[2], 0.0)) and not np.all(_same(probes[1], probes[2], 0.0)):
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

    # A jump inside the step makes every slope below meaningless (one element's
    # difference quotient is jump / step), so look for one first.
    jump = _jump(session, pass_, context, where)
    if jump is not None:
        return [jump]

    if zero:
        n = pass_.realised
        nonzero = np.any(np.abs(n) > rel * max(float(np.max(np.abs(n))), 1e-300), axis=0)
        return [_finding(
            "wrong-backward",
            f"{context}backward returns zeros for every grad_output, while the numerical gradient is nonzero at "
            f"{int(nonzero.sum())}/{nonzero.size} elements, with no jump inside the step at the worst one; "
            f"{_worst(pass_, 0 if user_failed else 1)}{where}",
            "return grad_output times the forward's local derivative (for dropout, grad_output * mask / (1 - p)), "
            "not zeros",
        )]

    findings = _explain_elementwise(pass_, x_shape, rel, context, where)
    if findings:
        return findings

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
    branch = _wrong_branch(b, f, wrong, big, np.asarray(pass_.x, dtype=np.float64).reshape(-1), rel)
    if branch:
        return [_finding(
            "wrong-backward", f"{context}the forward is elementwise; {branch}{where}",
            "re-derive the derivative on that branch (the backward's factor there is off by the stated ratio)",
        )]
    i = int(np.argmax(np.abs(b - f)))
    return [_finding(
        "wrong-backward",
        f"{context}the forward is elementwise; the backward's local slope differs from the forward's at "
        f"{int(wrong.sum())}/{n} elements, with no constant ratio (worst at flat index {i}: backward "
        f"{b[i]:.6g}, forward {f[i]:.6g}){where}",
        "re-derive d out_i / d x_i and evaluate it at the forward's input (not at its output, or vice versa)",
    )]


def _wrong_branch(b, f, wrong, big, x, rel) -> str:
    """Describe a backward whose slope is off by one constant factor on part of
    the elements only (a piecewise derivative with one wrong branch); '' if not."""
    suspect = wrong & big
    if not np.any(suspect) or suspect.sum() < 2 or np.all(wrong):
        return ""
    ratio = b[suspect] / f[suspect]
    k = float(np.median(ratio))
    if k == 0 or not np.all(np.abs(ratio - k) <= 10 * rel * abs(k)):
        return ""
    inside, outside = x[wrong], x[~wrong]
    if np.all(inside < 0) and np.all(outside >= 0):
        region = "exactly the elements with x < 0"
    elif np.all(inside > 0) and np.all(outside <= 0):
        region = "exactly the elements with x > 0"
    else:
        region = f"elements with x from {float(inside.min()):.4g} to {float(inside.max()):.4g}"
    return (f"the backward's slope is {k:.4g} times the forward's on {int(wrong.sum())}/{wrong.size} elements "
            f"({region}) and agrees on the rest: one branch of the derivative has the wrong factor")


# Bisections of the step when looking for a jump: enough to tell a jump from
# a kink anywhere but within 1/4096 of the step's ends.
_BISECTIONS = 12


class _Jump(NamedTuple):
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


def _locate_jump(session: _Session, pass_: _Pass, element: tuple[int, int] | None = None) -> _Jump | None:
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
    except _Unavailable:
        return None
    moves = max(moves, zero_moves(out_low, out_high))
    return _Jump(i, probe, value, h, total, change, float(low), float(high), splits, adjacent, moves)


def _interval(low: float, high: float) -> str:
    """low and high with just enough digits to tell them apart."""
    for digits in range(4, 18):
        a, b = f"{low:.{digits}g}", f"{high:.{digits}g}"
        if a != b:
            return f"{a} and {b}"
    return f"{low!r} and {high!r}"


def _jump_text(jump: _Jump) -> str:
    where = "between neighbouring floats" if jump.adjacent else f"after {jump.splits} bisections of the step"
    return (f"forward gives identical outputs at the same x but jumps within the step: at flat index "
            f"{jump.index} (x = {jump.value:.6g}, eps = {jump.half:.3g}) its output changes by up to "
            f"{jump.total:.4g}, and still by {jump.change:.4g} {where}, between x = "
            f"{_interval(jump.low, jump.high)}, where a continuous function's change would split between the halves")


def _jump_finding(pass_: _Pass, jump: _Jump, lead: str = "", where: str = "") -> Finding:
    """The finding for a located jump; `lead` says how the diagnosis got here."""
    text = lead + _jump_text(jump)
    if jump.zero_moves:
        return _finding(
            "nondeterministic-forward",
            f"{text}; {jump.zero_moves} outputs switch between zero and nonzero: the mask depends on x's values, "
            f"so the check's +eps and -eps calls use different masks{where}",
            "draw the mask independently of x's values (a fixed seed, or the mask of the test's own forward call)",
        )
    k, i = jump.probe, jump.index
    distance = abs(0.5 * (jump.low + jump.high) - jump.value)
    return _finding(
        "wrong-backward",
        f"{text}; the jump lies {distance:.3g} from x. No finite difference across a jump can check a "
        f"gradient: the backward gives {pass_.analytical[k, i]:.6g} there, the numerical gradient is "
        f"{pass_.numerical[k, i]:.6g}. Counted as wrong-backward: the backward has no term for the jump (no "
        f"backward can return one), and neither rounding nor a mask explains the mismatch{where}",
        "check at points farther than eps from the discontinuity (rounding, branches, thresholds), or test "
        "the pieces apart; do not loosen rtol, which would hide real errors",
    )


def _jump(session: _Session, pass_: _Pass, context: str = "", where: str = "") -> Finding | None:
    jump = _locate_jump(session, pass_)
    return None if jump is None else _jump_finding(pass_, jump, context, where)


def _budget_excess(pass_: _Pass) -> tuple[float, int, int]:
    """How many times its finite-difference budget the pass's worst failing element misses by.

    The budget of numerical[k, i] is what a correct gradient can be off by:
    rounding of the outputs (`noise`), the exact effect of dividing by the
    nominal rather than the realised step, a smooth function's truncation
    error, taken as (eps / max(1, |x|))^2 relative (a function that bends on
    the scale of x itself), and a few units of the dtype for the backward's
    own rounding. Returns (multiple, probe, flat index) of the worst failing
    element; multiple 0 when no element fails. An element whose step collapsed
    (x+eps and x-eps stored as the same value) has no limit: nothing at all
    can be measured there.
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
    multiple[~failing] = 0.0
    k, i = np.unravel_index(int(np.argmax(multiple)), multiple.shape)
    return float(multiple[k, i]), int(k), int(i)


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
                       eps, multiple: float = np.nan) -> Finding:
    before = first.trial().user
    budget = ("" if np.isnan(multiple) else
              f"; the mismatch is {multiple:.2g} times {first.dtype}'s finite-difference budget at this step "
              "(rounding of the outputs plus a smooth function's truncation)")
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
        worst = int(np.argmax(first.ratios()[0]))
        if collapsed:
            why = (f"x+eps and x-eps round to x itself at {collapsed}/{first.width.size} elements, so the "
                   "difference there is 0 (rounding)")
        elif first.half[worst] > resolving.half[worst]:
            why = ("the step is coarser than the dtype-aware one, and the central difference's truncation "
                   "error, of order eps^2 times the third derivative, dominates")
        else:
            why = "rounding noise, about machine eps / eps relative, swamps the difference"
        return _finding(
            "precision",
            f"max error/tolerance {before:.3g} with eps={eps:g}, {after:.3g} with the dtype-aware step "
            f"cbrt(machine eps) * max(1, |x|) (median {typical:.3g}) in {first.dtype}: at eps={eps:g} {why}"
            f"{budget}",
            "use eps=None (a dtype-aware step) and divide by the realised step",
        )
    if resolved_by == "float64":
        after = resolving.trial().user
        return _finding(
            "precision",
            f"max error/tolerance {before:.3g} in {first.dtype}, {after:.3g} for the same check in float64 "
            f"(x upcast, dtype-aware step): the formula is right, {first.dtype} finite differences "
            f"are not accurate enough for this tolerance{budget}",
            f"check gradients in float64; if the check must run in {first.dtype}, loosen rtol to its "
            "rounding budget (about 1e-2 for float16)",
        )
    return _finding(
        "precision",
        f"max error/tolerance {before:.3g}, yet in float64 at the dtype-aware step analytical and numerical "
        f"agree to {worst_rel:.2g} relative: rtol={first.rtol:g}, atol={first.atol:g} asks for more than "
        "a central difference can resolve (its rounding and truncation error)",
        "use a tolerance above the finite-difference budget (rtol >= 1e-6 in float64, 1e-3 in float32)",
    )


def _resolved_elsewhere(session: _Session, first: _Pass, failed: list[_Pass], resolved_by: str,
                        resolving: _Pass, eps, probe: bool) -> list[Finding]:
    """A check that fails in x's dtype but passes at the dtype-aware step or in float64.

    Precision only when the failure is within the failing pass's budget. Beyond
    it, the difference between the passes is the step: look for a jump the
    failing step straddles and the other does not reach (wrong-backward, or
    nondeterministic-forward when a mask moves with x); with no jump, it is
    truncation at a step too coarse for the forward (still precision, with
    another suggestion). `probe` False skips the jump search (a finding
    already explains a failure of the other pass).
    """
    (multiple, k, i), worst = max(((_budget_excess(p), p) for p in failed), key=lambda e: e[0][0])
    if multiple <= _BUDGET_MULTIPLE:
        return [_precision_finding(first, resolved_by, resolving, np.nan, eps, multiple)]
    before = worst.trial().user
    after = resolving.trial().user
    other = ("in float64 (x upcast, dtype-aware step)" if resolved_by == "float64"
             else "at the dtype-aware step")
    head = (f"max error/tolerance {before:.3g} in {worst.dtype} at eps = {worst.half[i]:.3g} is "
            f"{multiple:.3g} times the finite-difference budget there (rounding of the outputs over the "
            f"step, plus a smooth function's truncation), so it is not rounding, although the check {other} "
            f"passes (max error/tolerance {after:.3g})")
    jump = _locate_jump(session, worst, (k, i)) if probe else None
    if jump is not None:
        at = 0.5 * (jump.low + jump.high)
        reach = resolving.half[jump.index]
        why = (f" only because its step there, {reach:.3g}, does not reach the jump" if abs(at - jump.value) > reach
               else "")
        return [_jump_finding(worst, jump, f"{head}{why}; ")]
    bend = ("the forward has no jump there (its change splits between the halves when the step is bisected), "
            "so it bends on a scale below eps (a kink within the step, or curvature the step is too coarse "
            "for): the mismatch is the finite difference's truncation error, not the formula" if probe else
            "truncation at a kink or sharp curvature within eps of x would do this, and so would a jump "
            "there (not searched for: another finding explains the random grad_outputs' failure)")
    return [_finding(
        "precision",
        f"{head}: at the worst element (flat index {i}, x = {float(worst.x.reshape(-1)[i]):.6g}, "
        f"{'your grad_output' if k == 0 else 'a random grad_output'}) a = {worst.analytical[k, i]:.6g}, "
        f"n = {worst.numerical[k, i]:.6g}; {bend}",
        "check with a step below the scale on which the forward bends (in float64, as the check that "
        "passed), or at points farther than eps from kinks; do not loosen rtol, which would hide real errors",
    )]


# --------------------------------------------------------------------------
# The entry point.
# --------------------------------------------------------------------------


def _validated(forward, backward, x, grad_output, rtol, atol, eps, divide_by, seed):
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
        more when the check fails, plus at most 17 forward calls at single points
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
    failed_passes = [first]  # passes in x's dtype whose failure a rerun may resolve
    if not np.all(best.passes(best_which)) and eps is not None:
        best = _run_pass(session, f"{x.dtype}, dtype-aware step, realised step", x, probes,
                         default_step(x), "realised", rtol, atol, strict=True)
        best_which = "numerical"
        trials.append(best.trial())
        if not best.passes()[0]:
            failed_passes.append(best)
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
    if user_failed and resolved_by in ("default step", "float64"):
        # Another step or dtype passes, but that alone does not make the failure
        # rounding: a jump or kink within this step, out of reach of the other, passes there too.
        findings.extend(_resolved_elsewhere(session, first, failed_passes, resolved_by, resolving, eps,
                                            probe=not real_error))
    elif user_failed and resolved_by is not None:
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
