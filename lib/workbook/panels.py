"""What the playground computes and draws for one setting of its controls (see lib.workbook.playground).

`State` is one setting; `evaluate(state)` gathers the Evidence (masks, the
replica run, the error-vs-step sweep, the diagnosis); `draw(evidence)` makes
the four panels. No widgets here: tests and headless runs use these directly.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import matplotlib.pyplot as plt
import numpy as np

from lib import _checks
from lib.diagnose import Diagnosis, diagnose
from lib.dropout import dropout_backward
from lib.replica import (
    ORIGINAL,
    SWITCHES,
    GlobalRNG,
    ReplicaRun,
    matches_reported,
    original_dropout,
    replay_original_test,
    test_values,
)
from lib.workbook.plots import (
    DROPPED_COLOR,
    FAIL_COLOR,
    PASS_COLOR,
    plot_error_against_tolerance,
    plot_error_vs_step,
    plot_mask_agreement,
)

#: The replica switches the playground exposes (dtype is a control of its own).
SWITCH_NAMES = ("divide_by", "rng", "forward", "backward_mask", "restore_input")

#: Steps of the error-vs-step sweep: 1e-9 to 1e-1, four per decade.
STEPS = np.logspace(-9, -1, 33)

#: Upper bounds the controls accept (they keep one redraw well under a second).
MAX_CALLS = 200
MAX_SIZE = 50

_NOTE_COLOR = "#3d405b"  # a passing check whose diagnosis still names a flaw
_WRAP, _LINES = 64, 24  # the diagnosis panel's text: characters per line, lines


@dataclass(frozen=True)
class State:
    """One setting of the playground's controls; the defaults are the original test's."""

    dtype: str = ORIGINAL["dtype"]
    p: float = ORIGINAL["p"]
    seed: int = ORIGINAL["seed"]
    eps: float = ORIGINAL["eps"]
    n_calls: int = 20
    size: int = len(ORIGINAL["values"])
    divide_by: str = ORIGINAL["divide_by"]
    rng: str = ORIGINAL["rng"]
    forward: str = ORIGINAL["forward"]
    backward_mask: str = ORIGINAL["backward_mask"]
    restore_input: bool = ORIGINAL["restore_input"]

    def __post_init__(self):
        # Widgets hand over numpy scalars or ints for floats now and then: normalise, then check.
        set_ = object.__setattr__
        set_(self, "dtype", str(_checks.dtype_from_name(self.dtype)))
        set_(self, "p", _checks.drop_probability(self.p))
        set_(self, "eps", _checks.positive_step(self.eps))
        set_(self, "seed", _checks.positive_int(self.seed, "seed", low=0, high=2**63 - 1))
        set_(self, "n_calls", _checks.positive_int(self.n_calls, "n_calls", high=MAX_CALLS))
        set_(self, "size", _checks.positive_int(self.size, "size", high=MAX_SIZE))
        for name in SWITCH_NAMES:
            _checks.choice(getattr(self, name), name, SWITCHES[name])

    def switches(self) -> dict:
        """Keywords for lib.replica.replay_original_test."""
        s = {name: getattr(self, name) for name in ("dtype", "p", "seed", "eps", *SWITCH_NAMES)}
        s["values"] = test_values(self.size)
        return s

    def changed(self) -> dict:
        """The fields that differ from the defaults (the original test's, and n_calls=20)."""
        default = State()
        return {k: v for k, v in asdict(self).items() if v != getattr(default, k)}

    def describe(self) -> list[str]:
        """The state on three short lines: the test, the checker, the replica's other switches."""
        def show(*names):
            return " ".join(f"{n}={getattr(self, n)}" for n in names)

        return [f"test:    {show('dtype', 'p', 'seed', 'size')}",
                f"checker: {show('eps', 'divide_by', 'restore_input')}",
                f"replica: {show('rng', 'forward', 'backward_mask')}; mask panel: {show('n_calls')}"]


@dataclass
class ReplicaPair:
    """The replica test's forward and backward as plain callables, for lib.diagnose.

    Built exactly as lib.replica.replay_original_test builds them: one emulated
    process-wide RNG, the test's own dropout call, then (backward_mask="rebound")
    a second call whose mask the backward looks up late. `forward_masks`
    records the mask of every forward call, in call order.
    """

    forward: Callable
    backward: Callable
    x: np.ndarray
    grad_output: np.ndarray
    test_mask: np.ndarray
    backward_mask: np.ndarray
    forward_masks: list = field(default_factory=list)


def replica_pair(state: State) -> ReplicaPair:
    """A fresh forward/backward pair of the replica test under `state`'s switches."""
    dtype = np.dtype(state.dtype)
    p, seed = state.p, state.seed
    rng = GlobalRNG()
    reseed = state.rng == "reseed"
    if not reseed and seed > 0:
        rng.seed(seed)  # "global": seeded once, at the start of the test
    x = np.array(test_values(state.size), dtype=dtype)
    _, test_mask = original_dropout(x, p, seed, rng, reseed)
    backward_mask = test_mask
    if state.backward_mask == "rebound":
        _, backward_mask = original_dropout(x, p, seed, rng, reseed)
    masks: list[np.ndarray] = []
    scale = dtype.type(1.0 / (1.0 - p))

    def forward(x_in):
        x_in = np.asarray(x_in)
        if state.forward == "fixed_mask":
            masks.append(test_mask)
            return x_in * test_mask * scale
        out, drawn = original_dropout(x_in, p, seed, rng, reseed)
        masks.append(drawn)
        return out

    def backward(grad, x_in):
        return dropout_backward(grad, backward_mask, p)

    return ReplicaPair(forward, backward, x, np.ones_like(x), test_mask, backward_mask, masks)


def forward_call_masks(state: State) -> tuple[np.ndarray, np.ndarray]:
    """Masks of `state.n_calls` forward calls of a fresh replica pair, and the backward's mask.

    Returns ((n_calls, size) masks, (size,) reference). A checker calls forward
    2 * size times; the mask never depends on x's values, so these are the masks
    its first n_calls forward calls see.
    """
    pair = replica_pair(state)
    for _ in range(state.n_calls):
        pair.forward(pair.x)
    return np.array(pair.forward_masks).reshape(state.n_calls, -1), pair.backward_mask


@dataclass
class Evidence:
    """Everything render() computed for one state (no figures)."""

    state: State
    run: ReplicaRun
    reproduced: bool
    masks: np.ndarray
    reference: np.ndarray
    steps: np.ndarray
    errors: dict[str, np.ndarray]
    at_eps: dict[str, float]
    diagnosis: Diagnosis | None
    diagnosis_error: str = ""
    figure: object = None

    @property
    def matching_calls(self) -> int:
        return int(np.sum(np.all(self.masks == self.reference, axis=1)))

    @property
    def primary(self) -> str:
        """The diagnosis's primary code, or 'unavailable'."""
        return self.diagnosis.primary.code if self.diagnosis is not None else "unavailable"

    def lines(self) -> list[str]:
        """What render() prints: the state, the check, masks, step errors, diagnosis."""
        s, r = self.state, self.run.result
        changed = ", ".join(f"{k}={v}" for k, v in self.state.changed().items()) or "none"
        out = [*s.describe(), f"changed from the defaults: {changed}", ""]
        out += (self.run.message or f"Gradient check passed for {r.dtype}").splitlines()
        out.append(f"  {r.summary()}")
        out.append(f"  reported failure reproduced (index 0, all four numbers): {self.reproduced}")
        out.append("")
        out.append(f"mask agreement: {self.matching_calls}/{s.n_calls} forward calls use the backward's mask")
        out.append(f"worst relative error at eps={s.eps:.3g} (the check fails above about rtol={r.rtol:g}):")
        out += [f"  dividing by the {k + ' step':<14} {_fmt(v)}" for k, v in self.at_eps.items()]
        for division, errors in self.errors.items():
            below = self.steps[errors <= r.rtol]
            where = (f"{below.size} of {self.steps.size} steps, the smallest {below.min():.2g}" if below.size
                     else f"none of {self.steps.size} steps")
            out.append(f"  sweep of eps, {division} step: below rtol at {where}")
        out.append("")
        if self.diagnosis is None:
            out.append(f"diagnosis unavailable: {self.diagnosis_error}")
        else:
            d = self.diagnosis
            out.append(f"diagnosis of the replica's forward/backward (eps={s.eps:.3g}, {s.divide_by} step): "
                       f"{d.primary.code}")
            for k, finding in enumerate(d.findings, 1):
                out += textwrap.wrap(finding.line(), width=100, initial_indent=f"  {k}. ",
                                     subsequent_indent="     ")
        if not s.restore_input:
            out += textwrap.wrap("(restore_input=False belongs to the checker, which diagnose replaces with its "
                                 "own: its effect shows in the check above, not here)", width=100,
                                 initial_indent="  ", subsequent_indent="  ")
        return out


def relative_error(analytical, numerical) -> np.ndarray:
    """|a - n| / max(|a|, |n|) element by element, float64; 0 where both are 0, NaN kept."""
    a, n = np.asarray(analytical, dtype=np.float64), np.asarray(numerical, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):  # 0 / 0 where a = n = 0, replaced by 0
        return np.where(a == n, 0.0, np.abs(a - n) / np.maximum(np.abs(a), np.abs(n)))


def replica_error_vs_step(steps, *, divide_by: str = "nominal", **switches) -> np.ndarray:
    """Worst relative error max_i |a_i - n_i| / max(|a_i|, |n_i|) of the replica test at each step, (k,) float64.

    Runs lib.replica.replay_original_test(eps=h, divide_by=divide_by, **switches) for each h in `steps`;
    NaN where a realised step is zero.
    """
    results = [replay_original_test(eps=float(h), divide_by=divide_by, **switches).result for h in steps]
    return np.array([np.max(relative_error(r.analytical, r.numerical)) for r in results], dtype=np.float64)


def _fmt(value: float) -> str:
    return "undefined (x+eps and x-eps round to the same value)" if np.isnan(value) else f"{value:.3g}"


def evaluate(state: State, steps=STEPS) -> Evidence:
    """Run every experiment of the playground for `state`; no plotting."""
    switches = state.switches()
    run = replay_original_test(**switches)
    masks, reference = forward_call_masks(state)
    sweep = {k: v for k, v in switches.items() if k not in ("eps", "divide_by")}
    errors, at_eps = {}, {}
    for division in SWITCHES["divide_by"]:
        errors[division] = replica_error_vs_step(steps, divide_by=division, **sweep)
        if division == state.divide_by:
            r = run.result
        else:
            r = replay_original_test(**{**switches, "divide_by": division}).result
        at_eps[division] = float(np.max(relative_error(r.analytical, r.numerical)))
    pair = replica_pair(state)
    diagnosis, why = None, ""
    try:
        diagnosis = diagnose(pair.forward, pair.backward, pair.x, pair.grad_output, rtol=ORIGINAL["rtol"],
                             atol=ORIGINAL["atol"], eps=state.eps, divide_by=state.divide_by, seed=0)
    except ValueError as error:  # e.g. a step that float16 cannot represent
        why = str(error)
    return Evidence(state, run, matches_reported(run.result), masks, reference, np.asarray(steps, dtype=float),
                    errors, at_eps, diagnosis, why)


def _draw_step_panel(ax_step, evidence: Evidence) -> None:
    """The worst relative error against the step, or a note when it is exactly 0 at every step."""
    s = evidence.state
    result = evidence.run.result
    styles = {k: "-" if k == s.divide_by else "--" for k in evidence.errors}
    curves = {f"divide by {k} step": v for k, v in evidence.errors.items()}
    drawn = any(np.any(np.asarray(v) > 0) for v in curves.values())
    if drawn:
        plot_error_vs_step(ax_step, evidence.steps, curves, tolerance=result.rtol, mark_step=s.eps,
                           mark_label="chosen eps",
                           styles={f"divide by {k} step": v for k, v in styles.items()})
    else:  # every error is exactly 0 (or undefined): a log axis has nothing to draw
        ax_step.set(xscale="log", xlim=(evidence.steps.min(), evidence.steps.max()),
                    xlabel="step eps (units of x)", ylabel="relative gradient error |a - n| / max(|a|, |n|)")
        ax_step.axvline(s.eps, color="black", ls=":", lw=1)
        ax_step.text(0.5, 0.5, "the error is exactly 0 (or undefined) at every step:\nnothing to draw on a log axis",
                     transform=ax_step.transAxes, ha="center", va="center", fontsize=9)
    ax_step.set_title(f"Worst relative error vs step, {s.dtype}\n"
                      + (f"solid: divide_by={s.divide_by}; the check fails in the shaded band" if drawn
                         else "no step gives an error above 0"))


def draw(evidence: Evidence):
    """The four panels of one state; returns the figure (the caller shows or closes it)."""
    s, result = evidence.state, evidence.run.result
    fig, axes = plt.subplots(2, 2, figsize=(12.0, 8.0), layout="constrained",
                             gridspec_kw={"height_ratios": [1.0, 1.0]})
    (ax_masks, ax_step), (ax_tol, ax_diag) = axes

    plot_mask_agreement(ax_masks, evidence.masks, evidence.reference, legend=False,
                        title=f"Mask agreement\n{evidence.matching_calls} of {s.n_calls} forward calls "
                              "use the backward's mask")
    _legend_below(ax_masks, [(DROPPED_COLOR, "dropped, agrees"), (PASS_COLOR, "kept, agrees"),
                             (FAIL_COLOR, "differs")])

    _draw_step_panel(ax_step, evidence)

    plot_error_against_tolerance(ax_tol, result)
    side = ax_tol.get_legend()  # move the helper's legend below the panel
    handles, labels = side.legend_handles, [t.get_text() for t in side.get_texts()]
    side.remove()
    ax_tol.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2)
    ax_tol.set_title(f"Per element at eps={s.eps:.3g}\n{result.failing_indices.size} of "
                     f"{result.analytical.size} errors above the tolerance (black line)")
    undefined = int(np.sum(np.isnan(result.numerical)))
    if undefined:
        ax_tol.text(0.5, 0.5, f"numerical gradient undefined at {undefined} of {result.numerical.size} elements:\n"
                    f"x+eps and x-eps round to the same {s.dtype} value", transform=ax_tol.transAxes,
                    ha="center", va="center", color=FAIL_COLOR, fontsize=9)

    ax_diag.axis("off")
    code = evidence.primary
    verdict = "fails" if not result.passed else "passes"
    color = FAIL_COLOR if not result.passed else PASS_COLOR if code == "ok" else _NOTE_COLOR
    ax_diag.set_title(f"The check {verdict}; diagnosis: {code}", color=color, fontweight="bold")
    if evidence.diagnosis is not None:
        body = [*textwrap.wrap(evidence.diagnosis.headline(), width=_WRAP), ""]
        for k, finding in enumerate(evidence.diagnosis.findings, 1):
            body += textwrap.wrap(f"{k}. {finding.code}: {finding.evidence}", width=_WRAP)
            body += textwrap.wrap(f"suggestion: {finding.suggestion}", width=_WRAP, initial_indent="   ",
                                  subsequent_indent="   ")
    else:
        body = textwrap.wrap(f"diagnosis unavailable: {evidence.diagnosis_error}", width=_WRAP)
    if len(body) > _LINES:
        body = [*body[:_LINES - 1], "... (the full diagnosis is printed above the figure)"]
    ax_diag.text(0.0, 1.0, "\n".join(body), va="top", ha="left", fontsize=8, family="monospace",
                 transform=ax_diag.transAxes)
    return fig


def _legend_below(ax, entries) -> None:
    import matplotlib.patches as mpatches

    handles = [mpatches.Patch(color=c, label=lab) for c, lab in entries]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=len(entries))
