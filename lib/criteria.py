"""The investigation plan's success criteria, each as a function that measures one thing.

Every check returns a `Criterion`: a name, whether it passed, and the one number
that decided it (an error ratio, a keep rate, a count), plus a one-line detail.
The notebook prints them; nothing here prints.

The dropout test of the original: an input `test_values(size)` in `dtype`, the
original dropout with `p` and `seed` drawing from Mojo's generator
(`lib.replica`, so the mask is the one the real test drew), grad_output all
ones, and `lib.check_gradient` at the original rtol=1e-3, atol=1e-6.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from lib.dropout import dropout, dropout2d, dropout2d_backward, dropout_backward
from lib.gradcheck import GradCheckResult, check_gradient
from lib.replica import ORIGINAL, MojoRandom, original_dropout, replay_original_test, test_values
from lib.workbook.plots import FAIL_COLOR

#: The original test's tolerances; the fix must pass with these, not looser ones.
RTOL, ATOL = ORIGINAL["rtol"], ORIGINAL["atol"]
#: The tolerances of the public fix that closed the issue.
LOOSE_RTOL, LOOSE_ATOL = 2e-3, 1e-5


class Criterion(NamedTuple):
    """One success criterion: `name`, `passed`, the deciding `number`, and a `detail` line."""

    name: str
    passed: bool
    number: float
    detail: str = ""

    def __str__(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'}  criterion {self.name}: {self.detail}"

    @property
    def number_label(self) -> str:
        """The criterion's number, e.g. '3c' (the first word of its name)."""
        return self.name.split()[0]


# --- the dropout test on lib ---------------------------------------------------------------------

@dataclass(frozen=True)
class DropoutTest:
    """The original test's pieces, built on lib.

    Attributes:
        x: (size,) input in `dtype`.
        mask: (size,) 0/1 mask of the test's own dropout call, x's dtype.
        grad_output: (size,) ones, x's dtype.
        p, seed: dropout arguments.
    """

    x: np.ndarray
    mask: np.ndarray
    grad_output: np.ndarray
    p: float
    seed: int
    state: MojoRandom

    def seeded_forward(self, z: np.ndarray) -> np.ndarray:
        """The original forward: the original dropout called again with the same seed.

        With seed > 0 it reseeds Mojo's generator and draws the test's mask again; with
        seed 0 it draws on from the shared stream, as the original did.
        """
        return original_dropout(z, self.p, self.seed, self.state)[0]

    def fixed_mask_forward(self, z: np.ndarray) -> np.ndarray:
        """The public fix's forward: the test's mask applied directly."""
        return z * self.mask * z.dtype.type(1.0 / (1.0 - self.p))

    def backward(self, grad: np.ndarray, z: np.ndarray) -> np.ndarray:
        """dropout_backward with the test's own mask."""
        return dropout_backward(grad, self.mask, self.p)


def dropout_test(dtype: str, p: float, seed: int, size: int) -> DropoutTest:
    """Build the test: x = test_values(size) in dtype, mask from the original dropout(x, p, seed)."""
    x = np.array(test_values(size), dtype=dtype)
    state = MojoRandom()
    _, mask = original_dropout(x, p, seed, state)
    return DropoutTest(x=x, mask=mask, grad_output=np.ones_like(x), p=p, seed=seed, state=state)


def check_fixed_test(test: DropoutTest, eps: float | None = None) -> dict[str, GradCheckResult]:
    """lib.check_gradient at rtol=1e-3, atol=1e-6 with both forwards; never raises on failure.

    Returns:
        {"seeded forward": result, "fixed-mask forward": result}.
    """
    forwards = {"seeded forward": test.seeded_forward, "fixed-mask forward": test.fixed_mask_forward}
    return {label: check_gradient(f, test.backward, test.x, test.grad_output, rtol=RTOL, atol=ATOL, eps=eps,
                                  raise_on_failure=False)
            for label, f in forwards.items()}


def passes_unloosened(results: dict[str, GradCheckResult], dtype: str) -> Criterion:
    """Criterion 1: every forward variant passes at the original tolerances; number = worst max error ratio."""
    worst = max(r.max_error_ratio for r in results.values())
    passed = all(r.passed for r in results.values())
    parts = ", ".join(f"{label} {r.max_error_ratio:.3g}" for label, r in results.items())
    return Criterion(f"1 the {dtype} test passes unloosened with lib.check_gradient", passed, worst,
                     f"at rtol={RTOL:g}, atol={ATOL:g}: max error/tolerance {parts} (fails above 1)")


# --- the original checker: the minimal change and the public fix ----------------------------------

#: Replica runs compared in criterion 2: label -> switches changed from the original test.
FIX_VARIANTS = {
    "original (unchanged)": {},
    "divide by the realised step": {"divide_by": "realised"},
    "fixed mask only": {"forward": "fixed_mask"},
    "loosened tolerances only": {"rtol": LOOSE_RTOL, "atol": LOOSE_ATOL},
    "public fix: fixed mask + loosened": {"forward": "fixed_mask", "rtol": LOOSE_RTOL, "atol": LOOSE_ATOL},
}


def fix_variants(**base) -> dict[str, GradCheckResult]:
    """Replay the original test under each FIX_VARIANTS change, on top of `base` keywords
    (e.g. dtype, p, seed, eps, values). Returns label -> GradCheckResult."""
    return {label: replay_original_test(**{**base, **change}).result for label, change in FIX_VARIANTS.items()}


def minimal_change_fixes(variants: dict[str, GradCheckResult]) -> Criterion:
    """Criterion 2: dividing by the realised step alone makes the original checker pass at the
    original tolerances; number = its max error ratio."""
    r = variants["divide by the realised step"]
    return Criterion("2 dividing by the realised step fixes the original checker", r.passed, r.max_error_ratio,
                     f"at rtol={RTOL:g}, atol={ATOL:g}: max error/tolerance {r.max_error_ratio:.3g} (fails above 1)")


def format_variants(variants: dict[str, GradCheckResult]) -> str:
    """One aligned row per variant: tolerances, PASS/FAIL, first failing index, max error ratio."""
    width = max(len(k) for k in variants)
    lines = [f"{'change to the original test':<{width}}  {'rtol':>6} {'atol':>6}  {'result':>6}  "
             f"{'first fail':>10}  {'max err/tol':>11}"]
    for label, r in variants.items():
        first = "-" if r.first_failing_index is None else str(r.first_failing_index)
        lines.append(f"{label:<{width}}  {r.rtol:>6g} {r.atol:>6g}  {'PASS' if r.passed else 'FAIL':>6}  "
                     f"{first:>10}  {r.max_error_ratio:>11.4g}")
    return "\n".join(lines)


# --- the other dropout behaviours -----------------------------------------------------------------

def shapes_and_dtypes(dtype: str, p: float, seed: int) -> Criterion:
    """Criterion 3a: forward and backward keep shape and dtype (dropout: any shape; dropout2d: NCHW
    with an (N, C, 1, 1) mask). Number = how many (function, shape) cases were checked."""
    bad, cases = [], 0
    for shape in [(1,), (7,), (3, 4), (2, 3, 5)]:
        x = np.ones(shape, dtype=dtype)
        out, mask = dropout(x, p, seed=seed)
        grad = dropout_backward(np.ones_like(out), mask, p)
        cases += 1
        if not all(a.shape == shape and a.dtype == x.dtype for a in (out, mask, grad)):
            bad.append(f"dropout {shape}")
    for shape in [(1, 1, 1, 1), (2, 3, 4, 5)]:
        x = np.ones(shape, dtype=dtype)
        out, mask = dropout2d(x, p, seed=seed)
        grad = dropout2d_backward(np.ones_like(out), mask, p)
        cases += 1
        ok = (out.shape == grad.shape == shape and mask.shape == (*shape[:2], 1, 1)
              and out.dtype == mask.dtype == grad.dtype == x.dtype)
        if not ok:
            bad.append(f"dropout2d {shape}")
    detail = f"{cases - len(bad)}/{cases} cases keep shape and {dtype}" + (f"; wrong: {', '.join(bad)}" if bad else "")
    return Criterion("3a output shapes and dtypes", not bad, float(cases), detail)


def inference_is_identity(dtype: str, p: float, seed: int, n: int = 1000) -> Criterion:
    """Criterion 3b: training=False returns x unchanged and an all-ones mask, for both layers.
    Number = max |out - x|."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n).astype(dtype)
    out, mask = dropout(x, p, training=False)
    x4 = rng.standard_normal((2, 3, 4, 4)).astype(dtype)
    out4, mask4 = dropout2d(x4, p, training=False)
    worst = float(max(np.max(np.abs(out.astype(np.float64) - x)), np.max(np.abs(out4.astype(np.float64) - x4))))
    passed = (np.array_equal(out, x) and np.all(mask == 1) and np.array_equal(out4, x4) and np.all(mask4 == 1)
              and out.dtype == x.dtype and out is not x)
    return Criterion("3b inference mode is the identity", bool(passed), worst,
                     f"max |out - x| = {worst:g} over {n} elements (and a dropout2d batch); masks all ones")


def keep_rate_bounds(p: float, n: int, z: float = 5.0) -> tuple[float, float]:
    """(low, high): (1 - p) -/+ z binomial standard errors sqrt(p(1 - p) / n)."""
    half = z * np.sqrt(p * (1.0 - p) / n)
    return (1.0 - p) - half, (1.0 - p) + half


def keep_rate(dtype: str, p: float, seed: int, n: int = 200_000, z: float = 5.0) -> Criterion:
    """Criterion 3c: the fraction of kept elements over n elements lies within z binomial standard
    errors of 1 - p. Number = observed keep rate."""
    _, mask = dropout(np.ones(n, dtype=dtype), p, seed=seed)
    rate = float(np.mean(mask))
    low, high = keep_rate_bounds(p, n, z)
    return Criterion("3c keep rate within binomial bounds", low <= rate <= high, rate,
                     f"kept {rate:.5f} of {n} elements; expected {1 - p:.5f}, bounds [{low:.5f}, {high:.5f}] "
                     f"({z:g} standard errors)")


def exact_scaling(dtype: str, p: float, seed: int, n: int = 10_000) -> Criterion:
    """Criterion 3d: kept elements are x * (1/(1-p)) to one rounding of the dtype, dropped ones exactly 0,
    and backward applies the same factor. Number = max relative deviation of out/x from 1/(1-p)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.5, 2.0, n).astype(dtype)
    out, mask = dropout(x, p, seed=seed)
    grad = dropout_backward(np.ones_like(x), mask, p)
    kept = mask == 1
    target = 1.0 / (1.0 - p)
    ratio = out[kept].astype(np.float64) / x[kept].astype(np.float64)
    deviation = float(np.max(np.abs(ratio / target - 1.0))) if kept.any() else 0.0
    limit = float(np.finfo(dtype).eps)
    same_factor = np.array_equal(grad[kept], np.full(int(kept.sum()), dtype_scale(dtype, p), dtype=dtype))
    passed = deviation <= limit and np.all(out[~kept] == 0) and same_factor
    return Criterion("3d exact scaling by 1/(1-p)", bool(passed), deviation,
                     f"max |out/x / (1/(1-p)) - 1| = {deviation:.3g} (one {dtype} rounding: <= {limit:.3g}); "
                     f"dropped elements exactly 0: {bool(np.all(out[~kept] == 0))}; "
                     f"backward uses the same factor: {bool(same_factor)}")


def dtype_scale(dtype: str, p: float):
    """1/(1-p) rounded once to `dtype`."""
    return np.dtype(dtype).type(1.0 / (1.0 - p))


def reproducible_with_seed(dtype: str, p: float, seed: int, n: int = 10_000, calls: int = 3) -> Criterion:
    """Criterion 3e: `calls` dropout calls with the same seed give the same mask; another seed gives
    a different one (when 0 < p). Number = elements that differ between same-seed calls."""
    x = np.ones(n, dtype=dtype)
    masks = [dropout(x, p, seed=seed)[1] for _ in range(calls)]
    differing = int(sum(np.count_nonzero(m != masks[0]) for m in masks[1:]))
    other = dropout(x, p, seed=seed + 1)[1]
    other_differs = bool(np.any(other != masks[0])) if p > 0 else True
    return Criterion("3e reproducible with a seed", differing == 0 and other_differs, float(differing),
                     f"{differing} elements differ across {calls} calls with seed {seed}; seed {seed + 1} gives "
                     f"{'a different' if np.any(other != masks[0]) else 'the same'} mask"
                     + ("" if p > 0 else " (p=0 keeps everything)"))


def dropout2d_channels(dtype: str, p: float, seed: int, shape=(4, 6, 3, 3)) -> tuple[Criterion, GradCheckResult]:
    """Criterion 3f: dropout2d makes one decision per (sample, channel), and its backward passes
    lib.check_gradient at rtol=1e-3, atol=1e-6 with a random grad_output.
    Number = the check's max error ratio. Returns (criterion, check result)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    out, mask = dropout2d(x, p, seed=seed)
    kept = np.broadcast_to(mask == 1, shape)
    per_channel = bool(np.all(out[~kept] == 0) and np.all((out == 0).all(axis=(2, 3)) | kept.all(axis=(2, 3))))
    result = check_gradient(lambda z: dropout2d(z, p, seed=seed)[0],
                            lambda grad, z: dropout2d_backward(grad, mask, p), x, g, rtol=RTOL, atol=ATOL,
                            raise_on_failure=False)
    n_channels = shape[0] * shape[1]
    return (Criterion("3f dropout2d: one decision per channel, backward checked",
                      per_channel and result.passed, result.max_error_ratio,
                      f"{int(mask.sum())}/{n_channels} channels kept, each whole: {per_channel}; gradient check "
                      f"max error/tolerance {result.max_error_ratio:.3g} over {x.size} elements"), result)


# --- robustness sweep -----------------------------------------------------------------------------

def sweep(dtype: str, sizes: Sequence[int], ps: Sequence[float], seed: int) -> np.ndarray:
    """lib.check_gradient on the dropout test for every (size, p), seeded forward, default step.

    Returns:
        (len(sizes), len(ps)) float64 array of max error ratios (<= 1 passes).
    """
    ratios = np.empty((len(sizes), len(ps)))
    for i, size in enumerate(sizes):
        for j, p in enumerate(ps):
            results = check_fixed_test(dropout_test(dtype, p, seed, size))
            ratios[i, j] = results["seeded forward"].max_error_ratio
    return ratios


def sweep_passes(ratios: np.ndarray, sizes: Sequence[int], ps: Sequence[float]) -> Criterion:
    """Criterion 4: every (size, p) of the sweep passes. Number = the largest max error ratio."""
    worst = float(np.max(ratios))
    i, j = np.unravel_index(int(np.argmax(ratios)), ratios.shape)
    n_fail = int(np.sum(~(ratios <= 1.0)))
    return Criterion("4 robustness sweep over sizes and p", n_fail == 0, worst,
                     f"{ratios.size - n_fail}/{ratios.size} checks pass; worst max error/tolerance {worst:.3g} "
                     f"at size {sizes[i]}, p={ps[j]:g}")


def plot_sweep(ax, ratios: np.ndarray, sizes: Sequence[int], ps: Sequence[float], *, title: str = "") -> float:
    """Max error ratio against p, one line per size, log y, with the failure line at 1.

    Exact checks (ratio 0) cannot sit on a log axis: they are drawn as hollow
    markers on a floor a decade below the smallest non-zero ratio. Returns the floor.
    """
    positive = ratios[ratios > 0]
    floor = float(np.min(positive)) / 10 if positive.size else 1e-12
    top = max(float(np.max(ratios)) * 3, 10.0)
    for i, size in enumerate(sizes):
        row = ratios[i]
        line, = ax.plot(ps, np.where(row > 0, row, np.nan), marker="o", label=f"size {size}")
        zero = row == 0
        if zero.any():
            ax.plot(np.asarray(ps)[zero], np.full(int(zero.sum()), floor), ls="none", marker="o",
                    mfc="none", color=line.get_color())
    ax.set_yscale("log")
    ax.axhline(1.0, color=FAIL_COLOR, lw=1.2)
    ax.axhspan(1.0, top, color=FAIL_COLOR, alpha=0.08, lw=0)
    ax.text(min(ps), 1.3, "check fails above this line", color=FAIL_COLOR, fontsize=8)
    if (ratios == 0).any():
        ax.text(min(ps), floor * 1.6, "hollow: error exactly 0", fontsize=8)
    ax.set_ylim(floor / 3, top)
    ax.set(xlabel="drop probability p", ylabel="max |a - n| / tolerance (dimensionless)", title=title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return floor
