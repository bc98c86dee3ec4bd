"""Plotting helpers shared by the notebooks.

Each helper draws on an `ax` the caller made with `fig, ax = plt.subplots()`,
labels its axes with units, and returns what it computed, so a notebook can
print the deciding number next to the picture. The helpers never call
`plt.show()`: the notebook cell does, which keeps stored outputs free of
object reprs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib as mpl
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.ticker import MaxNLocator

PASS_COLOR = "#2a9d8f"
FAIL_COLOR = "#d1495b"
NEUTRAL_COLOR = "#8d99ae"
DROPPED_COLOR = "#b8c0cc"
DTYPE_COLORS = {"float16": "#e9c46a", "float32": "#e76f51", "float64": "#264653"}


def use_style() -> None:
    """One figure style for the whole workbook; call once in a notebook's setup cell."""
    mpl.rcParams.update({
        "figure.figsize": (7.0, 3.8),
        "figure.dpi": 100,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.titlesize": 11,
        "axes.labelsize": 10,
        "legend.fontsize": 9,
        "legend.frameon": False,
    })


def mask_agreement(masks, reference) -> tuple[np.ndarray, float]:
    """Compare each call's mask with a reference mask.

    Args:
        masks: (n_calls, n_elements) 0/1 masks, one row per forward call.
        reference: (n_elements,) the mask the backward uses.

    Returns:
        (agree, rate): agree is a (n_calls, n_elements) bool array; rate is the
        fraction of calls whose mask equals the reference in every element.
    """
    masks = np.atleast_2d(np.asarray(masks))
    reference = np.asarray(reference).reshape(1, -1)
    agree = masks == reference
    rate = float(np.mean(np.all(agree, axis=1))) if len(masks) else 1.0
    return agree, rate


def plot_mask_agreement(ax, masks, reference, *, title: str | None = None, legend: bool = True) -> float:
    """Heatmap of forward calls x elements: kept/dropped in agreement, or different.

    Returns the fraction of calls whose whole mask matches the reference.
    """
    masks = np.atleast_2d(np.asarray(masks))
    agree, rate = mask_agreement(masks, reference)
    # 0: agrees and dropped, 1: agrees and kept, 2: differs from the reference
    codes = np.where(agree, masks.astype(int), 2)
    cmap = ListedColormap([DROPPED_COLOR, PASS_COLOR, FAIL_COLOR])
    ax.imshow(codes, cmap=cmap, vmin=0, vmax=2, aspect="auto", interpolation="nearest")
    ax.grid(False)
    ax.set(xlabel="element index", ylabel="forward call number",
           title=title or f"Mask agreement with the backward's mask: {rate:.0%} of calls")
    n_elements = codes.shape[1]
    if n_elements <= 20:
        ax.set_xticks(range(n_elements))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    if legend:
        handles = [mpl.patches.Patch(color=c, label=lab) for c, lab in
                   [(DROPPED_COLOR, "dropped, agrees"), (PASS_COLOR, "kept, agrees"), (FAIL_COLOR, "differs")]]
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return rate


def plot_error_vs_step(ax, steps, curves: Mapping[str, Sequence[float]], *, tolerance: float | None = None,
                       mark_step: float | None = None, mark_label: str = "original eps",
                       colors: Mapping[str, str] | None = None, styles: Mapping[str, str] | None = None,
                       ylabel: str = "relative gradient error |a - n| / max(|a|, |n|)") -> None:
    """Log-log error against step size, with the pass threshold shaded.

    Args:
        steps: (k,) nominal steps eps.
        curves: label -> (k,) errors; zeros and NaNs are drawn as gaps.
        tolerance: relative error above which the check fails (shaded).
        mark_step: a step to mark with a vertical line (e.g. the original 1e-5).
    """
    steps = np.asarray(steps, dtype=float)
    for label, values in curves.items():
        values = np.asarray(values, dtype=float)
        shown = np.where(values > 0, values, np.nan)
        ax.loglog(steps, shown, styles.get(label, "-") if styles else "-", marker=".", label=label,
                  color=(colors or {}).get(label))
    if tolerance is not None:
        ax.axhline(tolerance, color=FAIL_COLOR, lw=1)
        ax.axhspan(tolerance, ax.get_ylim()[1] * 10, color=FAIL_COLOR, alpha=0.08, lw=0)
        ax.text(steps.min(), tolerance * 1.3, "check fails above this line", color=FAIL_COLOR, fontsize=8)
    if mark_step is not None:
        ax.axvline(mark_step, color="black", ls=":", lw=1)
        # On a white box: the curves pass behind the label wherever they cross the line.
        ax.text(mark_step * 1.15, ax.get_ylim()[0] * 3, f"{mark_label} = {mark_step:g}", fontsize=8,
                rotation=90, va="bottom", bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 1})
    ax.set(xlabel="step eps (units of x)", ylabel=ylabel)
    ax.legend(loc="best")


def plot_error_against_tolerance(ax, result, *, title: str | None = None) -> int:
    """Per element: |analytical - numerical| as bars against the tolerance as a step line.

    Returns the number of failing elements (bars above the line, drawn red).
    """
    diff = np.abs(result.difference).ravel()
    tol = result.tolerance.ravel()
    index = np.arange(diff.size)
    failing = ~(diff <= tol)
    # Zero has no height on a log axis: exact elements get a stub a decade below
    # the smallest value drawn, so no real error is ever mistaken for one.
    drawn = np.r_[diff[diff > 0], tol[tol > 0]]
    floor = float(drawn.min()) / 10 if drawn.size else 1e-18
    heights = np.where(diff > 0, diff, floor)
    colors = np.where(failing, FAIL_COLOR, np.where(diff == 0, NEUTRAL_COLOR, PASS_COLOR))
    ax.bar(index, heights, color=colors)
    for i in np.flatnonzero(diff == 0):
        ax.text(i, floor * 1.5, "exact", ha="center", va="bottom", fontsize=8)
    ax.step(np.r_[index - 0.5, index[-1] + 0.5], np.r_[tol, tol[-1]], where="post", color="black", lw=1.2)
    ax.set_yscale("log")
    ax.set(xlabel="element index (flat)", ylabel="absolute gradient error |a - n|",
           title=title or f"{int(failing.sum())} of {diff.size} elements above the tolerance")
    if diff.size <= 20:
        ax.set_xticks(index)
    handles = [mpl.lines.Line2D([], [], color="black", lw=1.2, label="tolerance atol + rtol*max(|a|,|n|)"),
               mpl.patches.Patch(color=FAIL_COLOR, label="|a - n| above it: fails"),
               mpl.patches.Patch(color=PASS_COLOR, label="|a - n| below it: passes"),
               mpl.patches.Patch(color=NEUTRAL_COLOR, label="|a - n| = 0: exact")]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return int(failing.sum())


def plot_jacobian(ax, jacobian, *, title: str = "Jacobian d out_j / d x_i") -> None:
    """Show a (n_out, n_in) Jacobian, J[j, i] = d out_j / d x_i, as an image with a colour bar."""
    jacobian = np.asarray(jacobian, dtype=float)
    limit = float(np.max(np.abs(jacobian))) or 1.0
    # A one-sided scale when nothing is negative, so the whole colour bar is used.
    low, cmap = (0.0, "Blues") if np.all(jacobian >= 0) else (-limit, "RdBu_r")
    image = ax.imshow(jacobian, cmap=cmap, vmin=low, vmax=limit, interpolation="nearest")
    ax.grid(False)
    ax.set(xlabel="input index i", ylabel="output index j", title=title)
    if max(jacobian.shape) <= 20:
        ax.set_xticks(range(jacobian.shape[1]))
        ax.set_yticks(range(jacobian.shape[0]))
        for (j, i), value in np.ndenumerate(jacobian):
            if value != 0:
                # white on the saturated ends of the colour map, black in the pale middle
                color = "white" if abs(value) > 0.6 * limit else "black"
                ax.text(i, j, f"{value:.3g}", ha="center", va="center", fontsize=7, color=color)
    ax.figure.colorbar(image, ax=ax, label="d out_j / d x_i (dimensionless)")


def plot_outcome_grid(ax, outcome, row_labels: Sequence[str], col_labels: Sequence[str], *,
                      annotations=None, title: str = "") -> None:
    """A pass/fail grid: outcome is a (rows, cols) array of True (pass) / False (fail)
    and NaN (not run); annotations is an optional (rows, cols) array of short strings."""
    outcome = np.asarray(outcome, dtype=float)
    cmap = ListedColormap([FAIL_COLOR, PASS_COLOR])
    ax.imshow(np.ma.masked_invalid(outcome), cmap=cmap, vmin=0, vmax=1, aspect="auto")
    ax.grid(False)
    ax.set_yticks(range(len(row_labels)), labels=row_labels, fontsize=8)
    ax.set_xticks(range(len(col_labels)), labels=col_labels, fontsize=8, rotation=30, ha="right")
    if annotations is not None:
        for (i, j), text in np.ndenumerate(np.asarray(annotations, dtype=object)):
            if text:
                ax.text(j, i, str(text), ha="center", va="center", fontsize=7, color="white")
    ax.set_title(title)
    handles = [mpl.patches.Patch(color=PASS_COLOR, label="passes"), mpl.patches.Patch(color=FAIL_COLOR, label="fails")]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0))
