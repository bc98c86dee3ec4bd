"""Dropout masks across calls: who draws which mask, and does the backward see it.

Three hypotheses of the investigation (RNG state, mask capture, test structure)
are one question asked three ways: do the forward calls the checker makes all
use the mask that the backward multiplies by? This module collects the masks,
measures their agreement, and separates what a changing mask does to the
numerical gradient from everything else (step, precision).

The original library's seeding is emulated with `lib.replica.GlobalRNG` and
`original_dropout`: a seed > 0 reseeds the shared RNG on every call, seed 0
means "do not seed". `lib.dropout` differs on purpose: there `seed=0` is an
ordinary seed and only `rng=` (a Generator) advances from call to call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, MaxNLocator

from lib import _checks
from lib.dropout import dropout
from lib.gradcheck import GradCheckResult, tolerance_for
from lib.replica import GlobalRNG, ReplicaRun, original_dropout
from lib.workbook.plots import FAIL_COLOR, PASS_COLOR, mask_agreement, plot_mask_agreement

#: The replica's two seeding modes, as the `rng` switch spells them.
RNG_MODES = ("reseed", "global")


@dataclass(frozen=True)
class MaskSeries:
    """Masks of consecutive dropout calls, compared with a reference mask.

    Attributes:
        label: what drew the masks (for tables and titles).
        reference: (n,) the mask the backward multiplies by (the test's own call).
        masks: (n_calls, n) one row per later forward call, in call order.
    """

    label: str
    reference: np.ndarray
    masks: np.ndarray

    @property
    def n_calls(self) -> int:
        return int(self.masks.shape[0])

    @property
    def agree(self) -> np.ndarray:
        """(n_calls, n) bool: call k's mask equals the reference at element i."""
        return mask_agreement(self.masks, self.reference)[0]

    @property
    def call_rate(self) -> float:
        """Fraction of calls whose whole mask equals the reference (1.0 with no calls)."""
        return mask_agreement(self.masks, self.reference)[1]

    @property
    def matching_calls(self) -> int:
        return int(np.sum(np.all(self.agree, axis=1)))

    @property
    def element_rate(self) -> float:
        """Fraction of (call, element) entries equal to the reference."""
        return float(np.mean(self.agree)) if self.agree.size else 1.0

    @property
    def distinct(self) -> int:
        """How many different masks appear among the reference and the calls."""
        rows = np.vstack([self.reference.reshape(1, -1), self.masks.reshape(self.n_calls, -1)])
        return len({row.tobytes() for row in rows.astype(np.float64)})


def _as_input(x) -> np.ndarray:
    x = _checks.float_array(x, "x")
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"x must be a non-empty 1-D array; got shape {x.shape}")
    return x


def original_masks(x, p: float, seed: int, n_calls: int, rng: str = "reseed",
                   label: str | None = None) -> MaskSeries:
    """Masks the original library draws: the test's call, then `n_calls` forward calls.

    Args:
        x: 1-D floating input (its shape and dtype set the masks').
        p: drop probability in [0, 1).
        seed: the seed every call passes; 0 means "do not seed", as in the original.
        n_calls: forward calls after the test's own call.
        rng: "reseed" (seed > 0 reseeds the shared RNG on every call, the original)
            or "global" (the shared RNG is seeded once, before the test's call).

    Returns:
        MaskSeries whose reference is the test's mask (what a captured backward uses).
    """
    x = _as_input(x)
    p = _checks.drop_probability(p)
    seed = _checks.positive_int(seed, "seed", low=0, high=2**63 - 1)
    n_calls = _checks.positive_int(n_calls, "n_calls", low=0, high=1_000_000)
    rng = _checks.choice(rng, "rng", RNG_MODES)
    state = GlobalRNG()
    reseed = rng == "reseed"
    if not reseed and seed > 0:
        state.seed(seed)
    reference = original_dropout(x, p, seed, state, reseed)[1]
    masks = [original_dropout(x, p, seed, state, reseed)[1] for _ in range(n_calls)]
    return MaskSeries(label or f"original, rng={rng}, seed={seed}", reference,
                      np.array(masks, dtype=x.dtype).reshape(n_calls, x.size))


def lib_masks(x, p: float, n_calls: int, *, seed: int | None = None, rng_seed: int | None = None,
              label: str | None = None) -> MaskSeries:
    """Masks `lib.dropout` draws: the test's call, then `n_calls` forward calls.

    Pass `seed` to give every call the same seed (each call starts a fresh
    Generator from it), or `rng_seed` to make one Generator that all calls share
    and advance.
    """
    x = _as_input(x)
    n_calls = _checks.positive_int(n_calls, "n_calls", low=0, high=1_000_000)
    if (seed is None) == (rng_seed is None):
        raise ValueError("pass exactly one of seed (reseed every call) and rng_seed (one shared Generator)")
    shared = None if rng_seed is None else np.random.default_rng(rng_seed)

    def draw():
        return dropout(x, p, seed=seed, rng=shared)[1]

    reference = draw()
    masks = [draw() for _ in range(n_calls)]
    name = f"lib.dropout(seed={seed})" if seed is not None else f"lib.dropout(rng=default_rng({rng_seed}))"
    return MaskSeries(label or name, reference, np.array(masks, dtype=x.dtype).reshape(n_calls, x.size))


def replica_masks(run: ReplicaRun, label: str | None = None) -> MaskSeries:
    """The masks of one replica run: the backward's mask against every forward call's."""
    masks = np.array(run.forward_masks).reshape(len(run.forward_masks), -1)
    s = run.switches
    return MaskSeries(label or f"replica rng={s.get('rng')}, backward_mask={s.get('backward_mask')}",
                      np.asarray(run.backward_mask), masks)


def mask_table(series: Sequence[MaskSeries]) -> str:
    """One aligned row per series: calls matching the reference, element agreement, distinct masks."""
    width = max([len(s.label) for s in series] + [6])
    lines = [f"{'masks':<{width}}  {'calls = reference':>17}  {'elements agree':>14}  {'distinct masks':>14}"]
    for s in series:
        calls = f"{s.matching_calls}/{s.n_calls}"
        lines.append(f"{s.label:<{width}}  {calls:>17}  {s.element_rate:>14.1%}  {s.distinct:>14d}")
    return "\n".join(lines)


def mask_string(mask) -> str:
    """A 0/1 mask as a compact string, e.g. '11110'."""
    return "".join("1" if v else "0" for v in np.ravel(mask))


@dataclass(frozen=True)
class NumericalShift:
    """How far a changing mask moves the numerical gradient away from a fixed function's.

    Attributes:
        shift: |n_stochastic - n_fixed| per element (float64).
        tolerance: atol + rtol * max(|n_stochastic|, |n_fixed|): the check's own pass band.
    """

    shift: np.ndarray
    tolerance: np.ndarray

    @property
    def exceeds(self) -> np.ndarray:
        """Elements where the shift alone is larger than the check tolerates."""
        with np.errstate(invalid="ignore"):
            return ~(self.shift <= self.tolerance)

    @property
    def produces_failure(self) -> bool:
        """The mask changes alone would fail the check at some element."""
        return bool(np.any(self.exceeds))

    @property
    def worst_index(self) -> int:
        return int(np.argmax(self.shift)) if self.shift.size else 0

    @property
    def max_shift(self) -> float:
        return float(np.max(self.shift)) if self.shift.size else 0.0


def numerical_shift(stochastic: GradCheckResult, fixed: GradCheckResult) -> NumericalShift:
    """Compare the numerical gradients of a check run twice: once with the forward as
    written, once with the mask held fixed (everything else equal)."""
    n_s = np.asarray(stochastic.numerical, dtype=np.float64).ravel()
    n_f = np.asarray(fixed.numerical, dtype=np.float64).ravel()
    if n_s.shape != n_f.shape:
        raise ValueError(f"the two results have different sizes: {n_s.size} and {n_f.size}")
    tolerance = tolerance_for(n_s, n_f, stochastic.rtol, stochastic.atol)
    with np.errstate(invalid="ignore"):
        shift = np.abs(n_s - n_f)
    return NumericalShift(shift=shift, tolerance=tolerance)


class OriginalForward:
    """The original test's forward for `lib.check_gradient`: dropout called inside it.

    Each call runs the original library's dropout with `seed` (reseeding the
    shared RNG when seed > 0, drawing on when seed == 0) and records the mask.
    """

    def __init__(self, p: float, seed: int):
        self.p = _checks.drop_probability(p)
        self.seed = _checks.positive_int(seed, "seed", low=0, high=2**63 - 1)
        self.state = GlobalRNG()
        self.masks: list[np.ndarray] = []

    def __call__(self, x):
        out, mask = original_dropout(np.asarray(x), self.p, self.seed, self.state, reseed=True)
        self.masks.append(mask)
        return out


def fixed_mask_forward(mask, p: float):
    """The fixed forward: x * mask / (1 - p) with one mask for every call (the public fix)."""
    mask = np.asarray(mask)
    p = _checks.drop_probability(p)

    def forward(x):
        x = np.asarray(x)
        return x * mask.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - p))

    return forward


def central_difference_terms(x, plus_masks, minus_masks, p: float, eps: float):
    """Split the original checker's numerical gradient into its two parts.

    For element i the checker evaluates forward(x + h e_i) with mask m+ and
    forward(x - h e_i) with mask m-, and divides by 2*eps. With s = 1/(1-p):

        n_i = s * (h+ m+_i + h- m-_i) / (2 eps)        slope of the function
            + s * sum_j x_j (m+_j - m-_j) / (2 eps)    change of the function

    h+ and h- are the steps actually stored in x's dtype. The second part is zero
    when both calls use one mask; otherwise it is of size |x| / eps.

    Args:
        x: (n,) the unperturbed input in its dtype.
        plus_masks, minus_masks: (n, n) the masks of the +eps and -eps call, row i for element i.

    Returns:
        (slope, change): two (n,) float64 arrays whose sum is the numerical gradient.
    """
    x = _as_input(x)
    plus_masks = np.asarray(plus_masks, dtype=np.float64)
    minus_masks = np.asarray(minus_masks, dtype=np.float64)
    n = x.size
    if plus_masks.shape != (n, n) or minus_masks.shape != (n, n):
        raise ValueError(f"masks must have shape ({n}, {n}); got {plus_masks.shape} and {minus_masks.shape}")
    scale = 1.0 / (1.0 - _checks.drop_probability(p))
    step = x.dtype.type(eps)
    x64 = x.astype(np.float64)
    h_plus = (x + step).astype(np.float64) - x64
    h_minus = x64 - (x - step).astype(np.float64)
    diag = np.arange(n)
    slope = scale * (h_plus * plus_masks[diag, diag] + h_minus * minus_masks[diag, diag]) / (2.0 * eps)
    change = scale * ((plus_masks - minus_masks) @ x64) / (2.0 * eps)
    return slope, change


def split_forward_masks(forward_masks, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The replica's forward masks (+eps, -eps per element, in order) as two (n, n) arrays."""
    masks = np.asarray(forward_masks)
    if masks.shape != (2 * n, n):
        raise ValueError(f"expected {2 * n} forward masks of {n} elements; got shape {masks.shape}")
    return masks[0::2], masks[1::2]


def plot_agreement_panels(axes, series: Sequence[MaskSeries]) -> list[float]:
    """One mask-agreement heatmap per series, side by side; the legend only on the last panel.

    Returns the call-level agreement rate of each series.
    """
    axes = np.atleast_1d(axes).ravel()
    if len(axes) != len(series):
        raise ValueError(f"need one axes per series: {len(axes)} axes for {len(series)} series")
    rates = []
    for k, (ax, s) in enumerate(zip(axes, series, strict=True)):
        rate = plot_mask_agreement(ax, s.masks, s.reference,
                                   title=f"{s.label}\n{s.matching_calls}/{s.n_calls} calls agree")
        rates.append(rate)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        if k < len(axes) - 1 and ax.get_legend() is not None:
            ax.get_legend().remove()
        spec = ax.get_subplotspec()
        if spec is not None and not spec.is_first_col():
            ax.set_ylabel("")
    return rates


def plot_numerical_deviation(ax, analytical, curves: dict, *, rtol: float, atol: float,
                             linthresh: float | None = None, title: str = "", legend: bool = False) -> None:
    """Numerical minus analytical gradient per element on a symlog axis, with the
    tolerance band atol + rtol*|analytical| shaded around zero.

    A marker is red when its element fails the check's own rule,
    |a - n| > atol + rtol * max(|a|, |n|), and black otherwise.

    Args:
        analytical: (n,) the analytical gradient.
        curves: label -> (n,) numerical gradients; markers are offset per label.
        legend: draw a legend outside the axes on the right, with the marker shapes in
            black and one entry for the red "fails" colour.
    """
    analytical = np.asarray(analytical, dtype=np.float64).ravel()
    n = analytical.size
    index = np.arange(n)
    band = atol + rtol * np.abs(analytical)
    ax.fill_between(np.r_[index - 0.5, n - 0.5], -np.r_[band, band[-1]], np.r_[band, band[-1]],
                    step="post", color=PASS_COLOR, alpha=0.25, lw=0, label="passes: within the tolerance")
    markers = ["o", "s", "^", "D"]
    width = 0.5 / max(len(curves), 1)
    largest = float(np.max(band))
    for k, (label, numerical) in enumerate(curves.items()):
        numerical = np.asarray(numerical, dtype=np.float64).ravel()
        deviation = numerical - analytical
        offset = (k - (len(curves) - 1) / 2) * width
        outside = ~(np.abs(deviation) <= tolerance_for(analytical, numerical, rtol, atol))
        ax.scatter(index + offset, deviation, marker=markers[k % len(markers)], s=28, zorder=3,
                   facecolors="none", edgecolors=np.where(outside, FAIL_COLOR, "black"), label=label)
        finite = np.abs(deviation[np.isfinite(deviation)])
        largest = max(largest, float(np.max(finite, initial=0.0)))
    ax.axhline(0.0, color="black", lw=0.8)
    floor = float(np.min(band[band > 0])) if np.any(band > 0) else 1e-12
    ax.set_yscale("symlog", linthresh=linthresh or floor / 10)
    # a decade of room beyond the farthest marker; only ever widen, so axes shared with
    # another panel keep that panel's markers in view too
    low, high = ax.get_ylim()
    ax.set_ylim(min(low, -10 * largest), max(high, 10 * largest))
    # zero, then one labelled tick every second decade from a decade above the linear zone
    linear = linthresh or floor / 10
    largest = max(largest, 10 * linear)
    first, last = int(np.ceil(np.log10(linear))) + 1, int(np.floor(np.log10(10 * largest)))
    decades = 10.0 ** np.arange(first, last + 1, 2)
    ax.yaxis.set_major_locator(FixedLocator(np.r_[-decades[::-1], 0.0, decades]))
    ax.set(xlabel="element index", ylabel="numerical - analytical gradient (dimensionless)", title=title)
    if n <= 20:
        ax.set_xticks(index)
    if legend:
        # scatter handles would take the colour of their first marker, red or black by chance
        handles = [Patch(color=PASS_COLOR, alpha=0.25, label="passes: within the tolerance")]
        handles += [Line2D([], [], ls="none", marker=markers[k % len(markers)], mfc="none", mec="black",
                           label=label) for k, label in enumerate(curves)]
        handles.append(Line2D([], [], ls="none", marker="o", mfc="none", mec=FAIL_COLOR,
                              label="red marker: the element fails"))
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0))
