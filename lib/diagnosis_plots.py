"""Notebook 11's helpers: the original test as a checkable pair, the catalogue
diagnosed and drawn as a confusion matrix, and pairs the diagnosis gets wrong.

    problem = original_problem()                       # the replica's forward/backward pair
    diagnose(*problem, eps=1e-5, divide_by="nominal")  # the original checker's settings
    cases = diagnose_catalogue(seed=42)                # every entry, each of its dtypes
    counts = confusion(outcomes(cases))                # rows true code, columns diagnosed
    plot_confusion(ax, counts)                         # -> attribution accuracy

`BLIND_SPOTS` holds small pairs whose true cause is known and which the
diagnosis, by the way it gathers evidence, cannot name: an error below the
tolerance or below float64's finite-difference resolution, a bug on a branch
that the given x never reaches, a second bug behind a nondeterministic
forward, and a mask mismatch after another elementwise function.
`jump_near_step_problem` is a pair that a weaker diagnosis would blame on
precision: a jump the float32 step straddles but the float64 step does not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import matplotlib as mpl
import numpy as np

from lib import _checks
from lib.diagnose import CODES, Diagnosis, diagnose
from lib.dropout import dropout, dropout_backward
from lib.mutants import CATALOGUE, SHORT_CODES, Entry, Outcome, Problem
from lib.replica import GlobalRNG, original_dropout, test_values
from lib.workbook.plots import FAIL_COLOR

# --------------------------------------------------------------------------
# The original test as a forward/backward pair
# --------------------------------------------------------------------------


def original_problem(dtype="float32", p: float = 0.3, seed: int = 42, size: int = 5) -> Problem:
    """The original test's pair, as `lib.replica.replay_original_test` builds it with every
    switch at its original value: one shared RNG reseeded on every call when seed > 0
    (seed 0: never seeded), a forward that calls dropout, a backward that captured the
    mask of the test's own dropout call, and grad_output all ones.

    Args:
        dtype: float16, float32 or float64; x = lib.replica.test_values(size) in it.
        p: drop probability in [0, 1).
        seed: the test's dropout seed; 0 means "do not seed".
        size: number of input values.

    Returns:
        Problem(forward, backward, x, grad_output). The forward and the test's own
        call share one RNG, so with seed 0 the order of calls matters, as it did.
    """
    dtype = _checks.dtype_from_name(dtype)
    p = _checks.drop_probability(p)
    seed = _checks.positive_int(seed, "seed", low=0, high=2**63 - 1)
    state = GlobalRNG()
    x = np.array(test_values(size), dtype=dtype)
    _, mask = original_dropout(x, p, seed, state, reseed=True)  # the test's own forward call

    def forward(x_in):
        return original_dropout(x_in, p, seed, state, reseed=True)[0]

    def backward(grad, x_in, captured=mask):  # value bound at definition, like the original's capture
        return dropout_backward(grad, captured, p)

    return Problem(forward, backward, x, np.ones_like(x))


# --------------------------------------------------------------------------
# The catalogue, diagnosed
# --------------------------------------------------------------------------


class Case(NamedTuple):
    """One diagnosed catalogue instance."""

    entry: Entry
    dtype: str
    seed: int
    diagnosis: Diagnosis

    @property
    def outcome(self) -> Outcome:
        d = self.diagnosis
        return Outcome(self.entry.name, self.dtype, self.seed, self.entry.code, d.primary.code, d.passed)


def diagnose_catalogue(entries: Sequence[Entry] = CATALOGUE, seed: int = 0) -> list[Case]:
    """Diagnose every entry in each dtype its label holds for, problems drawn with `seed`.

    Like lib.mutants.evaluate, but keeps each Diagnosis (for reports and costs).
    """
    return [Case(e, dtype, seed, e.diagnose(dtype, seed)) for e in entries for dtype in e.dtypes]


def outcomes(cases: Sequence[Case]) -> list[Outcome]:
    """The cases as lib.mutants.Outcome rows, ready for lib.mutants.confusion."""
    return [c.outcome for c in cases]


def accuracy(counts) -> float:
    """Attribution accuracy: the diagonal's share of all instances (NaN when there are none)."""
    counts = np.asarray(counts)
    total = counts.sum()
    return float(np.trace(counts) / total) if total else float("nan")


def label_purity(counts, code: str) -> float:
    """Of the instances diagnosed as `code`, the fraction whose true code is `code`.

    How far a diagnosis of `code` can be trusted (NaN when nothing was diagnosed so).
    """
    counts = np.asarray(counts)
    j = CODES.index(code)
    called = counts[:, j].sum()
    return float(counts[j, j] / called) if called else float("nan")


def label_recall(counts, code: str) -> float:
    """Of the instances truly `code`, the fraction diagnosed as `code` (NaN when there are none)."""
    counts = np.asarray(counts)
    j = CODES.index(code)
    labelled = counts[j].sum()
    return float(counts[j, j] / labelled) if labelled else float("nan")


class Detection(NamedTuple):
    """How the wrong pairs (true code not ok) were caught."""

    wrong: int  # instances of wrong pairs
    check_failed: int  # the plain check failed
    flagged_after_pass: int  # the plain check passed, yet findings[0] is not ok
    missed: int  # the plain check passed and the diagnosis said ok


def detection(cases: Sequence[Case]) -> Detection:
    """Count how the plain check and the diagnosis treat the wrong pairs."""
    wrong = [c for c in cases if c.entry.code != "ok"]
    failed = sum(not c.diagnosis.passed for c in wrong)
    flagged = sum(c.diagnosis.passed and c.diagnosis.primary.code != "ok" for c in wrong)
    return Detection(len(wrong), failed, flagged, len(wrong) - failed - flagged)


def example_per_code(cases: Sequence[Case], preferred: Mapping[str, str] | None = None) -> dict[str, Case]:
    """One case per code that occurs among the true codes, in the order of CODES.

    For each code: the case of the preferred entry name (its first dtype) if it was
    diagnosed correctly, else the first correctly diagnosed case with that code,
    else the first case with that code (so a misattribution is shown, not hidden).
    """
    preferred = dict(preferred or {})
    chosen = {}
    for code in CODES:
        pool = [c for c in cases if c.entry.code == code]
        if not pool:
            continue
        right = [c for c in pool if c.diagnosis.primary.code == code]
        named = [c for c in right if c.entry.name == preferred.get(code)]
        chosen[code] = (named or right or pool)[0]
    return chosen


def brief(diagnosis: Diagnosis) -> str:
    """The headline and the ranked findings, one line each (the check_gradient message form)."""
    return "\n".join([diagnosis.headline(), *diagnosis.lines()])


# --------------------------------------------------------------------------
# The confusion matrix as a picture
# --------------------------------------------------------------------------


def plot_confusion(ax, counts, labels: Sequence[str] = SHORT_CODES, *, title: str | None = None) -> float:
    """Rows true code, columns diagnosed primary code, coloured by the row's fraction.

    Every cell is annotated with its count; off-diagonal cells with a nonzero count
    are outlined in red. Returns the attribution accuracy (diagonal / total).
    """
    counts = np.asarray(counts, dtype=int)
    k = counts.shape[0]
    if counts.shape != (k, k) or len(labels) != k:
        raise ValueError(f"counts must be square with one label per row; got {counts.shape} and {len(labels)}")
    rows = counts.sum(axis=1, keepdims=True)
    fraction = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    image = ax.imshow(fraction, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.grid(False)
    ax.set_xticks(range(k), labels=labels, rotation=30, ha="right")
    ax.set_yticks(range(k), labels=labels)
    for (i, j), n in np.ndenumerate(counts):
        color = "white" if fraction[i, j] > 0.5 else ("black" if n else "#9aa5b1")
        ax.text(j, i, str(n), ha="center", va="center", fontsize=9, color=color)
        if n and i != j:
            ax.add_patch(mpl.patches.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec=FAIL_COLOR, lw=2))
    acc = accuracy(counts)
    ax.set(xlabel="diagnosed primary code (findings[0])", ylabel="true code (catalogue label)")
    ax.set_title(title or f"Attribution accuracy {acc:.1%}: {int(np.trace(counts))} of {int(counts.sum())} "
                 "instances on the diagonal")
    ax.figure.colorbar(image, ax=ax, label="fraction of the row (instances)")
    return acc


# --------------------------------------------------------------------------
# Blind spots: pairs with a known cause that the diagnosis cannot name
# --------------------------------------------------------------------------


class BlindSpot(NamedTuple):
    """A pair with a known cause (`truth`, codes a perfect diagnosis would list).

    factory(seed) -> (Problem, check settings for diagnose).
    """

    name: str
    truth: tuple[str, ...]
    description: str
    factory: Callable[[int], tuple[Problem, dict]]


def _tanh_off_by(factor: float, dtype, check: dict):
    def factory(seed):
        rng = np.random.default_rng(seed)
        x = rng.uniform(-1.5, 1.5, 12).astype(dtype)
        g = rng.standard_normal(12).astype(dtype)
        scale = dtype(factor)

        def backward(grad, x_in):
            return grad * (1 - np.tanh(x_in) ** 2) * scale

        return Problem(np.tanh, backward, x, g), dict(check)
    return factory


def _leaky_relu(x, slope=0.01):
    """Leaky ReLU: x where x > 0, slope * x elsewhere, in x's dtype."""
    return np.where(x > 0, x, x.dtype.type(slope) * x)


def _leaky_positive_only(seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.1, 2.0, 12).astype(np.float32)  # never reaches the negative branch

    def backward(grad, x_in):
        return grad * np.where(x_in > 0, 1.0, 0.1).astype(x_in.dtype)  # slope 0.1, not 0.01

    return Problem(_leaky_relu, backward, x, rng.standard_normal(12).astype(np.float32)), {}


def _two_bugs(seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, 12).astype(np.float32)
    generator = np.random.default_rng(seed + 1)  # advances on every forward call
    _, mask = dropout(x, 0.3, rng=generator)

    def forward(x_in):
        return dropout(x_in, 0.3, rng=generator)[0]

    def backward(grad, x_in):
        return grad * mask  # and forgets the 1/(1-p) factor

    return Problem(forward, backward, x, np.ones_like(x)), {}


def _mask_after_tanh(seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, 12).astype(np.float32)
    s = int(rng.integers(1, 2**31))
    _, mask = dropout(np.tanh(x), 0.3, seed=s)

    def forward(x_in):
        return dropout(np.tanh(x_in), 0.3, seed=s)[0]

    def backward(grad, x_in):
        return dropout_backward(grad, 1 - mask, 0.3) * (1 - np.tanh(x_in) ** 2)  # inverted mask

    return Problem(forward, backward, x, np.ones_like(x)), {}


def jump_near_step_problem(seed: int = 0) -> Problem:
    """x + (x > 0.001), checked at x[0] = 0 with an all-ones grad_output (float32, 8 elements).

    The jump is 0.001 away from x[0]: inside float32's dtype-aware step (~4.9e-3),
    outside float64's (~6.1e-6), so only a repeat in float64 passes.
    """
    rng = np.random.default_rng(seed)
    # x[0] = 0 sits 0.001 below a unit jump: inside float32's step, outside float64's.
    x = np.concatenate([[0.0], rng.uniform(0.5, 2.0, 7) * rng.choice([-1.0, 1.0], 7)]).astype(np.float32)

    def forward(x_in):
        return x_in + (x_in > 0.001).astype(x_in.dtype)

    def backward(grad, x_in):
        return grad * np.ones_like(x_in)  # right everywhere except at the jump itself

    return Problem(forward, backward, x, np.ones_like(x))


BLIND_SPOTS: tuple[BlindSpot, ...] = (
    BlindSpot("below-tolerance", ("wrong-backward",),
              "float32 tanh whose backward is 2e-4 too large, checked at rtol=1e-3",
              _tanh_off_by(1 + 2e-4, np.float32, {})),
    BlindSpot("below-float64-budget", ("wrong-backward",),
              "float64 tanh whose backward is 1e-8 too large, checked at rtol=1e-12, atol=0",
              _tanh_off_by(1 + 1e-8, np.float64, {"rtol": 1e-12, "atol": 0.0})),
    BlindSpot("untested-branch", ("wrong-backward",),
              "leaky ReLU with slope 0.1 instead of 0.01 for x < 0, checked at positive x only",
              _leaky_positive_only),
    BlindSpot("two-bugs", ("nondeterministic-forward", "wrong-backward"),
              "a forward that draws a new mask per call and a backward missing 1/(1-p)",
              _two_bugs),
    BlindSpot("mask-after-tanh", ("mask-mismatch",),
              "dropout(tanh(x)) with the inverted mask in the backward",
              _mask_after_tanh),
)


class BlindSpotRow(NamedTuple):
    """What the diagnosis made of one blind spot."""

    name: str
    description: str
    truth: tuple[str, ...]
    found: tuple[str, ...]
    max_ratio: float  # the plain check's max error/tolerance
    evidence: str  # the primary finding's evidence

    @property
    def named(self) -> bool:
        """The diagnosis lists exactly the true causes, primary first."""
        return self.found == self.truth


def run_blind_spots(seed: int = 0, spots: Sequence[BlindSpot] = BLIND_SPOTS) -> list[BlindSpotRow]:
    """Diagnose each blind spot; its row says what the diagnosis found against the truth."""
    rows = []
    for spot in spots:
        problem, check = spot.factory(seed)
        d = diagnose(*problem, **check)
        rows.append(BlindSpotRow(spot.name, spot.description, spot.truth, tuple(d.codes), d.result.max_error_ratio,
                                 d.primary.evidence))
    return rows


def format_blind_spots(rows: Sequence[BlindSpotRow]) -> str:
    """An aligned table: name, true codes, diagnosed codes, the check's max error/tolerance."""
    def codes(c):
        return " + ".join(c)

    w_name = max(len("pair"), *(len(r.name) for r in rows))
    w_truth = max(len("true cause(s)"), *(len(codes(r.truth)) for r in rows))
    w_found = max(len("diagnosed"), *(len(codes(r.found)) for r in rows))
    lines = [f"{'pair':<{w_name}}  {'true cause(s)':<{w_truth}}  {'diagnosed':<{w_found}}  {'err/tol':>8}  named?"]
    for r in rows:
        lines.append(f"{r.name:<{w_name}}  {codes(r.truth):<{w_truth}}  {codes(r.found):<{w_found}}  "
                     f"{r.max_ratio:>8.3g}  {'yes' if r.named else 'no'}")
    return "\n".join(lines)
