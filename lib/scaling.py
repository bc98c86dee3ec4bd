"""How the gradient checks scale with the input size N (notebook 12).

A dense check (`lib.gradcheck.check_gradient`) moves one element at a time, so
it calls forward twice per element: 2N calls (and one more at x itself, to
learn the output's shape). The fast check (`lib.gradcheck.fast.check_gradient_fast`)
moves every element at once along a random sign direction and costs two calls
per probe, whatever N is. When a probe fails, group testing finds a single
wrong element in about 2 log2 N more calls.

This module counts those calls (counting is exact and repeatable, timing is
not), times the checks for a picture, plants faults for the localisation demo,
and computes a projection by hand so that a notebook can show what the fast
mode compares and where its tolerance comes from.
"""

from __future__ import annotations

import importlib.util
import math
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from lib import _checks
from lib.dropout import dropout, dropout_backward
from lib.gradcheck import check_gradient, default_step
from lib.gradcheck.fast import FastCheckResult, check_gradient_fast, hoeffding_multiplier
from lib.replica import GlobalRNG, original_dropout, test_values
from lib.workbook.plots import FAIL_COLOR, NEUTRAL_COLOR, PASS_COLOR

MODES = ("dense", "fast")
DENSE_COLOR = "#264653"
FAST_COLOR = "#e76f51"
TORCH_COLOR = "#8d99ae"


class CallCounter:
    """Wrap a function and count how often it is called.

    `calls` is the number of calls so far; `elements` the total number of
    input elements they were given (a dense check at N gives about 2N * N).
    """

    def __init__(self, function: Callable):
        if not callable(function):
            raise TypeError(f"CallCounter needs a callable; got {type(function).__name__}")
        self.function = function
        self.calls = 0
        self.elements = 0

    def __call__(self, x, *args, **kwargs):
        self.calls += 1
        numel = getattr(x, "numel", None)  # a torch tensor's size is a method
        self.elements += int(numel() if callable(numel) else np.size(x))
        return self.function(x, *args, **kwargs)

    def reset(self) -> None:
        self.calls = 0
        self.elements = 0


@dataclass(frozen=True)
class Problem:
    """A checkable function pair: seeded dropout and the backward that uses its mask.

    Attributes:
        forward: forward(x) -> dropout(x), the mask redrawn from `seed` on every call.
        backward: backward(grad_output, x) -> grad_output * mask / (1 - p).
        x: the input, test_values(n) in `dtype`, shape (n,).
        grad_output: all ones, x's shape and dtype (as in the original test).
        mask: the 0/1 mask the backward uses, x's dtype.
        p: the drop probability.
    """

    forward: Callable
    backward: Callable
    x: np.ndarray
    grad_output: np.ndarray
    mask: np.ndarray
    p: float

    @property
    def n(self) -> int:
        return int(self.x.size)

    @property
    def jacobian(self) -> np.ndarray:
        """The Jacobian d out / d x, (n, n) float64: diag(mask * scale), with the scale 1 / (1 - p)
        rounded to x's dtype, as lib.dropout applies it."""
        scale = float(self.x.dtype.type(1.0 / (1.0 - self.p)))
        return np.diag(self.mask.astype(np.float64) * scale)


def dropout_problem(n: int, dtype="float32", p: float = 0.3, seed: int = 42) -> Problem:
    """Seeded dropout of lib.replica.test_values(n): deterministic, so any check should pass."""
    n = _checks.positive_int(n, "n", low=1, high=10_000_000)
    dtype = _checks.dtype_from_name(dtype)
    p = _checks.drop_probability(p)
    x = np.array(test_values(n), dtype=dtype)
    mask = dropout(x, p, seed=seed)[1]

    def forward(a):
        return dropout(a, p, seed=seed)[0]

    def backward(grad, a):
        return dropout_backward(grad, mask, p)

    return Problem(forward, backward, x, np.ones_like(x), mask, p)


def original_problem(size: int = 5, dtype="float32", p: float = 0.3, seed: int = 42) -> Problem:
    """The original test's pair, with the original library's dropout.

    One process-wide RNG: a seed > 0 reseeds it on every forward call, seed 0
    means "do not seed" (every call draws a new mask). The backward uses the
    mask of the test's own first dropout call, as the test did.
    """
    dtype = _checks.dtype_from_name(dtype)
    p = _checks.drop_probability(p)
    seed = _checks.positive_int(seed, "seed", low=0, high=2**63 - 1)
    state = GlobalRNG()
    x = np.array(test_values(size), dtype=dtype)
    _, mask = original_dropout(x, p, seed, state, reseed=True)

    def forward(a):
        return original_dropout(a, p, seed, state, reseed=True)[0]

    def backward(grad, a):
        return dropout_backward(grad, mask, p)

    return Problem(forward, backward, x, np.ones_like(x), mask, p)


def planted(backward: Callable, index: int, error: float) -> Callable:
    """A backward that is right everywhere except at flat `index`, where it is off by `error`."""

    def wrong(grad, a):
        out = np.array(backward(grad, a), copy=True)
        out.reshape(-1)[index] += error
        return out

    return wrong


# --- counting and timing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One check of a Problem: forward calls and the input elements they were given (counted),
    best wall time, verdict, and the last check's result."""

    n: int
    mode: str
    calls: int
    seconds: float
    passed: bool
    elements: int = 0
    result: object = field(default=None, repr=False, compare=False)


def run_check(problem: Problem, mode: str = "dense", *, repeats: int = 1, **options) -> Run:
    """Run check_gradient in `mode` on `problem` `repeats` times; count forward calls, keep the best time.

    The call count is read from a CallCounter around forward (one check's
    worth), not from the result, so it counts what really happened.
    """
    _checks.choice(mode, "mode", MODES)
    repeats = _checks.positive_int(repeats, "repeats")
    counter = CallCounter(problem.forward)
    best = math.inf
    for _ in range(repeats):
        counter.reset()
        start = time.perf_counter()
        result = check_gradient(counter, problem.backward, problem.x, problem.grad_output, mode=mode,
                                raise_on_failure=False, **options)
        best = min(best, time.perf_counter() - start)
    return Run(problem.n, mode, counter.calls, best, bool(result.passed), counter.elements, result)


def sweep(sizes: Sequence[int], mode: str, *, dtype="float32", p: float = 0.3, seed: int = 42,
          repeats: int = 1) -> list[Run]:
    """run_check on the seeded dropout problem at each size."""
    return [run_check(dropout_problem(n, dtype, p, seed), mode, repeats=repeats) for n in sizes]


def size_grid(low: int, high: int, factor: int = 4) -> list[int]:
    """low, low * factor, ... up to high, and high itself: a geometric grid of sizes."""
    low = _checks.positive_int(low, "low")
    high = _checks.positive_int(high, "high", low=low)
    factor = _checks.positive_int(factor, "factor", low=2)
    sizes = [low]
    while sizes[-1] * factor <= high:
        sizes.append(sizes[-1] * factor)
    if sizes[-1] != high:
        sizes.append(high)
    return sizes


def torch_available() -> bool:
    """True when PyTorch looks importable (it is optional; nothing here requires it)."""
    if "torch" in sys.modules:
        return sys.modules["torch"] is not None
    return importlib.util.find_spec("torch") is not None


def _import_torch():
    """The torch module, or None when it is missing or fails to import."""
    if not torch_available():
        return None
    try:
        import torch
    except ImportError:
        return None
    return torch


def torch_status(dtype="float32") -> str:
    """Why PyTorch is not timed in `dtype` ("" when torch_sweep will time it)."""
    dtype = _checks.dtype_from_name(dtype)
    if dtype == np.float16:
        return "PyTorch not timed in float16"
    return "" if _import_torch() is not None else "PyTorch is not installed"


def torch_sweep(sizes: Sequence[int], *, fast: bool, dtype="float32", p: float = 0.3, seed: int = 42,
                repeats: int = 1) -> list[Run] | None:
    """Time torch.autograd.gradcheck on the same loss sum(dropout(x) * 1), or None without PyTorch.

    The loss is the scalar both of our modes check, so the coverage is the same:
    slow mode makes 2N loss evaluations, fast mode one random projection. Like
    our forward, the loss redraws its mask from `seed` on every call (with
    torch.rand, so the mask differs from numpy's; the cost is what is compared).
    Its step is cbrt(eps_dtype), the scale of our default step. float16 is not
    timed (None): torch's check fails there, and a failing fast check reruns
    the slow one just to print the Jacobian.
    """
    if torch_status(dtype):
        return None
    torch = _import_torch()
    dtype = _checks.dtype_from_name(dtype)
    eps = float(np.cbrt(np.finfo(dtype).eps))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x = torch.ones(8, dtype=torch.from_numpy(np.ones(1, dtype=dtype)).dtype, requires_grad=True)
        torch.autograd.gradcheck(lambda t: (2.0 * t).sum(), (x,), eps=eps, fast_mode=fast)  # untimed: first use
    runs = []
    scale = 1.0 / (1.0 - p)

    def loss(t):
        keep = torch.rand(t.shape, generator=torch.Generator().manual_seed(seed), dtype=t.dtype) > p
        return (t * keep * scale).sum()

    for n in sizes:
        counter = CallCounter(loss)
        x = torch.from_numpy(np.array(test_values(n), dtype=dtype)).requires_grad_(True)
        best, passed = math.inf, False
        for _ in range(repeats):
            counter.reset()
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch warns that non-float64 checks may fail
                passed = bool(torch.autograd.gradcheck(counter, (x,), eps=eps, fast_mode=fast,
                                                       raise_exception=False))
            best = min(best, time.perf_counter() - start)
        runs.append(Run(n, "torch fast" if fast else "torch slow", counter.calls, best, passed, counter.elements))
    return runs


# --- what a probe compares, by hand --------------------------------------------------------------------


@dataclass(frozen=True)
class HandProbe:
    """One random projection computed step by step (float64 unless said otherwise).

    Attributes:
        signs: the random direction s, +1/-1, shape (n,).
        half_step: the nominal half-step h_i.
        d: the realised perturbation x+ - x-, as stored in x's dtype.
        numerical: grad_output . (f(x+) - f(x-)).
        analytical: a . d with a = backward(grad_output, x).
        nominal_analytical: a . (2 h s), what dividing by the nominal step would compare with.
        vjp: v^T J u with v = grad_output, u = d, J the exact Jacobian (None if not given).
        lam: the Hoeffding multiplier for `probes` probes.
        errors_part: lam * ||t * d||_2, t_i the largest error the dense rule accepts at i.
        rounding_part: lam * eps_mach * (||g f(x+)||_2 + ||g f(x-)||_2).
    """

    signs: np.ndarray
    half_step: np.ndarray
    d: np.ndarray
    numerical: float
    analytical: float
    nominal_analytical: float
    vjp: float | None
    lam: float
    errors_part: float
    rounding_part: float

    @property
    def tolerance(self) -> float:
        return self.errors_part + self.rounding_part

    @property
    def residual(self) -> float:
        return self.analytical - self.numerical

    @property
    def passed(self) -> bool:
        return abs(self.residual) <= self.tolerance


def hand_probe(problem: Problem, *, seed: int = 0, eps: float | None = None, probes: int = 2,
               rtol: float = 1e-3, atol: float = 1e-6) -> HandProbe:
    """Compute one projection of the problem's gradient the way the fast mode does, in a few lines.

    The signs come from np.random.default_rng(seed); `probes` only sets the
    Hoeffding multiplier (the union bound over the probes a check would draw).
    """
    x, g = problem.x, problem.grad_output.astype(np.float64)
    signs = np.where(np.random.default_rng(seed).integers(0, 2, size=x.size) == 1, 1.0, -1.0)
    half = default_step(x) if eps is None else np.full(x.shape, _checks.positive_step(eps))
    x64 = x.astype(np.float64)
    plus = (x64 + half * signs).astype(x.dtype)
    minus = (x64 - half * signs).astype(x.dtype)
    d = plus.astype(np.float64) - minus.astype(np.float64)  # exact: both are values of x's dtype
    f_plus = np.asarray(problem.forward(plus), dtype=np.float64)
    f_minus = np.asarray(problem.forward(minus), dtype=np.float64)
    a = np.asarray(problem.backward(problem.grad_output.copy(), x.copy()), dtype=np.float64)
    lam = hoeffding_multiplier(probes)
    t = (atol + rtol * np.abs(a)) / (1.0 - rtol)
    machine = float(np.finfo(x.dtype).eps)
    vjp = float(g @ problem.jacobian @ d) if x.size <= 2000 else None
    return HandProbe(
        signs=signs,
        half_step=half,
        d=d,
        numerical=float(np.dot(f_plus - f_minus, g)),
        analytical=float(np.dot(a, d)),
        nominal_analytical=float(np.dot(a, 2.0 * half * signs)),
        vjp=vjp,
        lam=lam,
        errors_part=lam * float(np.linalg.norm(t * d)),
        rounding_part=lam * machine * float(np.linalg.norm(g * f_plus) + np.linalg.norm(g * f_minus)),
    )


def hoeffding_sums(t: np.ndarray, w: np.ndarray, draws: int, seed: int = 0) -> np.ndarray:
    """z = sum_i e_i s_i w_i / ||t w||_2 for `draws` random sign vectors s, with the worst
    errors the dense rule accepts, e_i = t_i (fixed signs: the sum is symmetric in them).

    Hoeffding: P(|z| >= c) <= 2 exp(-c^2 / 2) for every c, whatever N is.
    """
    t = np.asarray(t, dtype=np.float64).ravel()
    w = np.asarray(w, dtype=np.float64).ravel()
    draws = _checks.positive_int(draws, "draws")
    tw = t * w
    rng = np.random.default_rng(seed)
    sums = np.empty(draws)
    chunk = max(1, 2_000_000 // max(tw.size, 1))
    for lo in range(0, draws, chunk):
        k = min(chunk, draws - lo)
        signs = rng.integers(0, 2, size=(k, tw.size), dtype=np.int8) * 2 - 1
        sums[lo : lo + k] = signs @ tw
    return sums / np.linalg.norm(tw)


def tail_fraction(z: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """Fraction of |z| >= c for each level c."""
    z = np.abs(np.asarray(z, dtype=np.float64))
    return np.array([float(np.mean(z >= c)) for c in levels])


# --- localisation --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Localisation:
    """One planted fault and what the fast check did with it.

    Attributes:
        n: input size; index: where the fault was planted; error: how far off.
        found: the failing elements the fast check reported (flat indices).
        probe_calls, search_calls, detail_calls: forward calls of the probes, of
            the group-testing search, and of measuring an element reached by inference.
        threshold: the smallest error at `index` the probes are guaranteed to
            see, 2 T / w_index (T: the smallest probe tolerance, w: the realised step).
        passed: the fast check's verdict (False when the fault was seen).
        result: the FastCheckResult.
    """

    n: int
    index: int
    error: float
    found: tuple[int, ...]
    probe_calls: int
    search_calls: int
    detail_calls: int
    threshold: float
    passed: bool
    result: object = field(default=None, repr=False, compare=False)

    @property
    def found_exactly(self) -> bool:
        return self.found == (self.index,)

    @property
    def extra_calls(self) -> int:
        return self.search_calls + self.detail_calls

    @property
    def budget(self) -> float:
        """2 log2 N: the goal for the calls spent finding the element."""
        return 2.0 * math.log2(self.n)

    @property
    def visible(self) -> bool:
        """The fault is large enough that the probes must see it."""
        return abs(self.error) > self.threshold


def detection_threshold(result: FastCheckResult, index: int) -> float:
    """2 T / w_index: a fault at `index` above this makes some probe fail, with certainty up to
    the check's false-alarm probability.

    A probe's residual is e_index * d_index plus the other elements' errors and
    the rounding, which stay within the probe's tolerance T (that is what T
    bounds). So |e_index| w_index > 2 T leaves the residual above T.
    """
    tolerance = float(np.min(result.probe_tolerance * result.probe_step))
    return 2.0 * tolerance / float(result.step.ravel()[index])


def localise_planted(n: int, *, error: float = 50.0, trials: int = 1, dtype="float32", p: float = 0.3,
                     seed: int = 42, probes: int = 2) -> list[Localisation]:
    """Plant a fault of size `error` at `trials` random positions among n and run the fast check.

    Positions come from np.random.default_rng([seed, n]): the same for a
    given (seed, n), whatever else is run.
    """
    problem = dropout_problem(n, dtype, p, seed)
    positions = np.random.default_rng([seed, n]).integers(0, n, size=_checks.positive_int(trials, "trials"))
    rows = []
    for index in positions:
        index = int(index)
        wrong = planted(problem.backward, index, error)
        result = check_gradient_fast(problem.forward, wrong, problem.x, problem.grad_output, probes=probes,
                                     raise_on_failure=False)
        rows.append(Localisation(n, index, float(error), tuple(int(i) for i in result.failing_indices),
                                 2 * result.probes, result.search_calls, result.detail_calls,
                                 detection_threshold(result, index), bool(result.passed), result))
    return rows


def sensitivity(sizes: Sequence[int], *, index: int = 0, dtype="float32", p: float = 0.3, seed: int = 42,
                eps: float | None = None, probes: int = 2) -> np.ndarray:
    """detection_threshold at `index` for the correct dropout backward, at each size (float64 array)."""
    out = []
    for n in sizes:
        problem = dropout_problem(n, dtype, p, seed)
        result = check_gradient_fast(problem.forward, problem.backward, problem.x, problem.grad_output,
                                     probes=probes, eps=eps, raise_on_failure=False)
        out.append(detection_threshold(result, index))
    return np.array(out)


def log_slope(sizes: Sequence[float], values: Sequence[float]) -> float:
    """Least-squares slope of log(values) against log(sizes)."""
    return float(np.polyfit(np.log(np.asarray(sizes, float)), np.log(np.asarray(values, float)), 1)[0])


# --- plots ---------------------------------------------------------------------------------------------


def plot_forward_calls(ax, dense: Sequence[Run], fast: Sequence[Run], *, up_to: int) -> None:
    """Forward calls against N, log-log: dense counted and its formula 2N + 1 up to `up_to`, fast counted."""
    ns = np.geomspace(min(r.n for r in (*dense, *fast)), up_to, 50)
    ax.loglog(ns, 2 * ns + 1, "--", color=DENSE_COLOR, lw=1, label="dense, 2N + 1 (formula)")
    ax.loglog([r.n for r in dense], [r.calls for r in dense], "o", color=DENSE_COLOR, label="dense, counted")
    ax.loglog([r.n for r in fast], [r.calls for r in fast], "s-", color=FAST_COLOR, label="fast, counted")
    ax.set(xlabel="input size N (elements)", ylabel="forward calls per check")
    ax.legend(loc="upper left")


def plot_times(ax, series: Mapping[str, Sequence[Run] | None], *, absent: str = "") -> None:
    """Best wall time against N, log-log, one line per checker; `absent` notes what was not timed."""
    colors = {"dense": DENSE_COLOR, "fast": FAST_COLOR}
    for label, runs in series.items():
        if not runs:
            continue
        kind = label.split()[0]
        style = "o--" if "slow" in label or label == "dense" else "s-"
        ax.loglog([r.n for r in runs], [r.seconds for r in runs], style, label=label,
                  color=colors.get(kind, TORCH_COLOR), mfc="none" if kind == "torch" else None)
    ax.set(xlabel="input size N (elements)", ylabel="wall time per check (s)")
    ax.legend(loc="upper left", title=absent or None, title_fontsize=8)


def plot_localisation(ax, rows: Sequence[Localisation]) -> None:
    """Search calls (filled) and search + detail calls (hollow) against N, with 2 log2 N."""
    ns = np.array([r.n for r in rows])
    grid = np.geomspace(ns.min(), ns.max(), 200)
    ax.semilogx(grid, 2 * np.log2(grid), color="black", lw=1.2, label="goal 2 log2 N")
    ax.semilogx(grid, 2 * np.ceil(np.log2(grid)), color=NEUTRAL_COLOR, lw=1, ls="--",
                label="2 ceil(log2 N): search + detail at most")
    jitter = np.array([1.0 + 0.06 * (k % 5 - 2) for k in range(len(rows))])
    found = np.array([r.found_exactly for r in rows])
    search = np.array([r.search_calls for r in rows])
    extra = np.array([r.extra_calls for r in rows])
    colors = np.where(found, PASS_COLOR, FAIL_COLOR)
    ax.scatter(ns * jitter, search, c=colors, marker="o", zorder=3, label="search calls (fault found: green)")
    detail = extra > search
    ax.scatter((ns * jitter)[detail], extra[detail], facecolors="none", edgecolors=colors[detail], marker="o",
               s=60, zorder=3, label="search + 2 detail calls")
    ax.set(xlabel="input size N (elements)", ylabel="forward calls after the probes")
    ax.legend(loc="upper left")


def plot_sensitivity(ax, sizes: Sequence[int], thresholds: Sequence[float], *, dense_tolerance: float,
                     fault: float | None = None) -> None:
    """The smallest single-element error the probes must see, against N, with a sqrt(N) guide."""
    sizes = np.asarray(sizes, dtype=float)
    thresholds = np.asarray(thresholds, dtype=float)
    ax.loglog(sizes, thresholds, "o-", color=FAST_COLOR, label="fast: 2 T / w (guaranteed to be seen)")
    ax.loglog(sizes, thresholds[0] * np.sqrt(sizes / sizes[0]), ":", color="black", lw=1, label="slope 1/2")
    ax.axhline(dense_tolerance, color=DENSE_COLOR, lw=1, ls="--", label="dense: its tolerance at the element")
    if fault is not None:
        ax.axhline(abs(fault), color=FAIL_COLOR, lw=1, label=f"planted fault {abs(fault):g}")
    ax.set(xlabel="input size N (elements)", ylabel="error at one element (gradient units)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))


def plot_hoeffding(ax, z: np.ndarray, lam: float, levels: Sequence[float]) -> None:
    """Empirical P(|z| >= c) against Hoeffding's 2 exp(-c^2 / 2), with the check's multiplier marked."""
    levels = np.asarray(levels, dtype=float)
    tail = tail_fraction(z, levels)
    shown = np.where(tail > 0, tail, np.nan)
    ax.semilogy(levels, np.minimum(1.0, 2 * np.exp(-levels**2 / 2)), color="black", lw=1.2,
                label="Hoeffding bound 2 exp(-c²/2)")
    ax.semilogy(levels, shown, "o", color=PASS_COLOR, ms=4, label=f"measured, {z.size} random directions")
    ax.axvline(lam, color=FAIL_COLOR, lw=1)
    ax.text(lam * 0.98, 0.5, f"lam = {lam:.2f}", color=FAIL_COLOR, ha="right", fontsize=8)
    ax.set(xlabel="c (multiples of ||t w||_2)", ylabel="P(|sum of errors| >= c ||t w||_2)")
    ax.legend(loc="lower left")


def run_or_refusal(problem: Problem, mode: str, **options) -> tuple[Run | None, str]:
    """run_check, or (None, the checker's message) when it refuses its arguments (ValueError),
    e.g. a step too small to move some element in this dtype."""
    try:
        return run_check(problem, mode, **options), ""
    except ValueError as error:
        return None, str(error)
