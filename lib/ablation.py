"""Ablation of the suspected causes: every combination of the replica's switches.

`run_grid` replays the original test (lib.replica) once for every combination
of switch values and records, per combination, an `Outcome`: pass or fail,
the first failing index, the numbers there, and whether the failure is the
reported one (`lib.replica.matches_reported`).

`cause_table` then asks, for each switch value, the three questions an
ablation can answer about an outcome predicate P (e.g. "fails" or
"reproduces the reported failure"), over the grid G of combinations:

* necessary:   every combination in G with P has this value
               (there is no way to get P without it);
* sufficient:  every combination in G with this value has P, whatever the
               other switches are;
* sufficient given the base: the base test with only this switch set to this
               value has P (a single-switch flip from the base test).

`compact_rows` folds combinations that differ in one switch, over all of its
values, with the same outcome into one row with "*" there (repeatedly), so a
printed table stays short without hiding any combination.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import matplotlib as mpl
import numpy as np
from matplotlib.colors import ListedColormap

from lib.replica import ORIGINAL, SWITCHES, matches_reported, replay_original_test
from lib.workbook.plots import FAIL_COLOR, PASS_COLOR

#: Colour of a cell that reproduces the reported failure exactly.
REPORTED_COLOR = "#5b2a86"

#: A wildcard in a compacted row: every value of that switch, same outcome.
ANY = "*"


def ablation_axes(seed: int) -> dict[str, tuple]:
    """The switches to combine, each with its values (the original value first).

    The replica's six switches, plus `seed`: the given seed and 0, the original
    library's "do not seed" value (only (0,) when `seed` is 0 already).

    Returns:
        name -> tuple of values; 2*3*2*2*2*2*2 = 192 combinations for seed > 0.
    """
    axes = {name: tuple(values) for name, values in SWITCHES.items()}
    axes["seed"] = (int(seed), 0) if int(seed) != 0 else (0,)
    return axes


@dataclass(frozen=True)
class Outcome:
    """One combination of switches and what the replica's check did with it.

    Attributes:
        switches: switch name -> value for this combination (the grid's axes only).
        passed: every element within atol + rtol * max(|a|, |n|).
        first_index: first failing flat index, None when passed.
        analytical, numerical, tolerance, error_ratio: float64 scalars at
            `first_index` (NaN when passed); error_ratio = |a - n| / tolerance.
        max_error_ratio: worst |a - n| / tolerance over all elements (inf for NaN gradients).
        failing: flat indices of all failing elements.
        reproduces: fails at the reported index with the reported numbers (or with the
            reference failure's, see `run_grid`).
        masks_agree: every forward call used the mask the backward multiplied by.
    """

    switches: Mapping[str, object]
    passed: bool
    first_index: int | None
    analytical: float
    numerical: float
    tolerance: float
    error_ratio: float
    max_error_ratio: float
    failing: tuple[int, ...]
    reproduces: bool
    masks_agree: bool

    @property
    def failed(self) -> bool:
        return not self.passed


def failure_signature(result) -> tuple | None:
    """(first failing index, analytical, numerical there) of a failed check; None when it passed.

    Two runs with the same signature fail in the same place with the same numbers: the
    reported failure's signature under the original parameters, another one under others.
    """
    i = result.first_failing_index
    if i is None:
        return None
    return i, float(result.analytical.ravel()[i]), float(result.numerical.ravel()[i])


def outcome_of(switches: Mapping[str, object], reference: tuple | None = None, **fixed) -> Outcome:
    """Replay the original test with `switches` (and the `fixed` keywords) and summarise it.

    `reproduces` compares with the reported numbers, or with `reference` (a
    `failure_signature`) when given: the base test's own failure under other parameters.
    """
    run = replay_original_test(**fixed, **switches)
    r = run.result
    i = r.first_failing_index
    if i is None:
        a = n = tol = ratio = float("nan")
    else:
        a, n = float(r.analytical.ravel()[i]), float(r.numerical.ravel()[i])
        tol, ratio = float(r.tolerance.ravel()[i]), float(r.error_ratio.ravel()[i])
    agree = all(np.array_equal(m, run.backward_mask) for m in run.forward_masks)
    return Outcome(
        switches=dict(switches), passed=r.passed, first_index=i, analytical=a, numerical=n,
        tolerance=tol, error_ratio=ratio, max_error_ratio=r.max_error_ratio,
        failing=tuple(int(k) for k in r.failing_indices), masks_agree=agree,
        reproduces=matches_reported(r) if reference is None else failure_signature(r) == reference)


def combinations(axes: Mapping[str, Sequence]) -> list[dict]:
    """Every combination of the axes' values, as dicts, in axis order (last axis fastest)."""
    names = list(axes)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*axes.values())]


def run_grid(axes: Mapping[str, Sequence], reference: tuple | None = None, **fixed) -> list[Outcome]:
    """Replay the original test for every combination of `axes`.

    Args:
        axes: switch name -> values, e.g. `ablation_axes(42)`.
        reference: the failure to look for (`failure_signature`); None: the reported one.
        **fixed: other replica keywords held fixed for the whole grid
            (p, eps, values, rtol, atol); they must not name an axis.

    Returns:
        one Outcome per combination, in `combinations(axes)` order.
    """
    clash = set(axes) & set(fixed)
    if clash:
        raise ValueError(f"{sorted(clash)[0]!r} is both an axis and a fixed keyword")
    return [outcome_of(c, reference, **fixed) for c in combinations(axes)]


def flip(base: Mapping[str, object], name: str, value) -> dict:
    """`base` with only switch `name` set to `value`."""
    return {**base, name: value}


def find(outcomes: Iterable[Outcome], switches: Mapping[str, object]) -> Outcome:
    """The outcome whose switches equal `switches` on every axis of the grid."""
    for o in outcomes:
        if all(o.switches[k] == switches[k] for k in o.switches):
            return o
    raise KeyError(f"no combination {dict(switches)} in the grid")


@dataclass(frozen=True)
class CauseRow:
    """Necessity and sufficiency of one switch value for one outcome predicate.

    Attributes:
        switch, value: the cause examined, e.g. ("dtype", "float32").
        with_value: how many combinations have this value.
        with_outcome: how many of those have the outcome.
        without_outcome: how many combinations WITHOUT this value have the outcome.
        necessary: the outcome occurs somewhere and never without this value.
        sufficient: every combination with this value has the outcome.
        sufficient_at_base: the base test with only this switch set to this value has it.
        is_base: this value is the base test's value of the switch.
    """

    switch: str
    value: object
    with_value: int
    with_outcome: int
    without_outcome: int
    necessary: bool
    sufficient: bool
    sufficient_at_base: bool
    is_base: bool


def cause_table(outcomes: Sequence[Outcome], predicate: Callable[[Outcome], bool],
                base: Mapping[str, object]) -> list[CauseRow]:
    """Necessity/sufficiency of every switch value for `predicate` over the grid.

    Switches with a single value in the grid are left out: the grid never
    varies them, so it cannot say anything about them.

    Args:
        outcomes: the whole grid (from `run_grid`).
        predicate: Outcome -> bool, e.g. `lambda o: o.reproduces`.
        base: switch -> value of the base test (must be a combination in the grid).
    """
    axes = {name: list(dict.fromkeys(o.switches[name] for o in outcomes)) for name in outcomes[0].switches}
    total = sum(predicate(o) for o in outcomes)
    rows = []
    for name, values in axes.items():
        if len(values) < 2:
            continue
        for value in values:
            has = [o for o in outcomes if o.switches[name] == value]
            hits = sum(predicate(o) for o in has)
            rows.append(CauseRow(
                switch=name, value=value, with_value=len(has), with_outcome=hits,
                without_outcome=total - hits, necessary=total > 0 and hits == total,
                sufficient=hits == len(has), sufficient_at_base=predicate(find(outcomes, flip(base, name, value))),
                is_base=base[name] == value))
    return rows


def necessary_values(rows: Iterable[CauseRow]) -> list[tuple[str, object]]:
    """(switch, value) pairs marked necessary, in table order."""
    return [(r.switch, r.value) for r in rows if r.necessary]


def sufficient_values(rows: Iterable[CauseRow]) -> list[tuple[str, object]]:
    """(switch, value) pairs marked sufficient (all else free), in table order."""
    return [(r.switch, r.value) for r in rows if r.sufficient]


def having_all(outcomes: Iterable[Outcome], values: Iterable[tuple[str, object]]) -> list[Outcome]:
    """The outcomes whose switches have every (switch, value) pair in `values`."""
    values = list(values)
    return [o for o in outcomes if all(o.switches[k] == v for k, v in values)]


def describe(values: Iterable[tuple[str, object]]) -> str:
    """'divide_by=nominal and dtype=float32' (or 'none')."""
    parts = [f"{k}={v}" for k, v in values]
    if not parts:
        return "none"
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


# --- tables -------------------------------------------------------------------------------------

def outcome_class(o: Outcome) -> int:
    """Sort key: 0 reproduces the reported failure, 1 fails otherwise, 2 passes."""
    return 0 if o.reproduces else (1 if o.failed else 2)


def _signature(o: Outcome) -> tuple:
    # What a printed row shows about the outcome, at its printed precision.
    if o.passed:
        return ("PASS", "", "", "", "", "", "yes" if o.masks_agree else "no", f"{o.max_error_ratio:.2g}")
    return ("FAIL", str(o.first_index), f"{o.analytical:.7f}", f"{o.numerical:.7f}", f"{o.error_ratio:.3g}",
            "yes" if o.reproduces else "no", "yes" if o.masks_agree else "no", f"{o.max_error_ratio:.3g}")


@dataclass(frozen=True)
class CompactRow:
    """A row of the compact table: switch values (ANY for 'every value') and the shared outcome."""

    switches: tuple
    outcome: Outcome
    count: int


def compact_rows(outcomes: Sequence[Outcome], order: Sequence[str] | None = None) -> list[CompactRow]:
    """Fold combinations with identical printed outcomes into rows with wildcards.

    A group of rows that agree on every switch but `name`, cover every value
    of `name`, and print the same outcome, becomes one row with ANY for
    `name`. Switches are tried in `order` (default: the last axis first) until
    nothing folds. Lossless: each row stands for exactly `count` combinations.
    """
    names = list(outcomes[0].switches)
    axes = {n: list(dict.fromkeys(o.switches[n] for o in outcomes)) for n in names}
    order = list(order) if order is not None else names[::-1]
    rows = [CompactRow(tuple(o.switches[n] for n in names), o, 1) for o in outcomes]
    changed = True
    while changed:
        changed = False
        for name in order:
            k = names.index(name)
            groups: dict[tuple, list[CompactRow]] = {}
            for row in rows:
                key = (row.switches[:k] + row.switches[k + 1:], _signature(row.outcome))
                groups.setdefault(key, []).append(row)
            merged = []
            for group in groups.values():
                values = [r.switches[k] for r in group]
                if len(group) > 1 and ANY not in values and sorted(map(str, values)) == sorted(map(str, axes[name])):
                    first = group[0]
                    merged.append(CompactRow((*first.switches[:k], ANY, *first.switches[k + 1:]), first.outcome,
                                             sum(r.count for r in group)))
                    changed = True
                else:
                    merged.extend(group)
            rows = merged
    return rows


def _rank(value, values: Sequence) -> int:
    return len(values) if value == ANY else list(values).index(value)


def sort_rows(rows: Sequence[CompactRow], axes: Mapping[str, Sequence]) -> list[CompactRow]:
    """Reported failures first, then other failures, then passes; within each, axis values in
    grid order (the original value first, wildcards last)."""
    names = list(axes)
    return sorted(rows, key=lambda r: (outcome_class(r.outcome),
                                       *(_rank(v, axes[n]) for n, v in zip(names, r.switches, strict=True))))


_SHORT = {"stochastic": "stoch", "fixed_mask": "fixed", "captured": "capt"}
_HEADERS = {"divide_by": "divide", "dtype": "dtype", "rng": "rng", "forward": "forward",
            "backward_mask": "bwd mask", "restore_input": "restore", "seed": "seed"}


def short(value) -> str:
    """A short printable form of a switch value."""
    if isinstance(value, bool):  # restore_input; checked first, as True == 1 == a seed
        return "yes" if value else "no"
    if isinstance(value, str):
        return _SHORT.get(value, value)
    return str(value)


_SECTIONS = ("reproduces the reported failure", "fails otherwise", "passes")


def format_table(rows: Sequence[CompactRow], names: Sequence[str]) -> str:
    """Aligned text table, one section per outcome class (in the order of `rows`).

    Columns: the switches (ANY = every value), # (combinations the row stands
    for), result, first failing index, analytical and numerical gradient
    there, err/tol there, reported (the reported failure?), masks= (every
    forward call used the backward's mask?), max e/t (worst error/tolerance
    over all elements).
    """
    header = [_HEADERS.get(n, n) for n in names] + ["#", "result", "idx", "analytical", "numerical", "err/tol",
                                                     "reported", "masks=", "max e/t"]
    body = [[short(v) for v in r.switches] + [str(r.count), *_signature(r.outcome)] for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    section = None
    for r, b in zip(rows, body, strict=True):
        kind = outcome_class(r.outcome)
        if kind != section:
            section = kind
            count = sum(q.count for q in rows if outcome_class(q.outcome) == kind)
            lines.append(f"-- {_SECTIONS[kind]}: {count} combination{'s' if count != 1 else ''} --")
        lines.append("  ".join(c.rjust(w) for c, w in zip(b, widths, strict=True)))
    return "\n".join(lines)


def format_cause_table(rows_any: Sequence[CauseRow], rows_reported: Sequence[CauseRow]) -> str:
    """Side by side, per switch value: fails k/n, necessary, sufficient, sufficient from the
    base, for (a) any failure and (b) the reported failure. '<' marks the base value."""
    yes = {True: "yes", False: "-"}
    head = (f"{'switch':>13} {'value':>10}  |{'(a) any failure':^34}|{'(b) reported failure':^34}|\n"
            f"{'':>13} {'':>10}  |" + f"{'k/n':>8} {'nec.':>5} {'suff.':>6} {'from base':>10} |" * 2)
    lines = [head]
    for a, b in zip(rows_any, rows_reported, strict=True):
        mark = "<" if a.is_base else " "
        cells = []
        for r in (a, b):
            cells.append(f"{r.with_outcome:>4}/{r.with_value:<3} {yes[r.necessary]:>5} {yes[r.sufficient]:>6} "
                         f"{yes[r.sufficient_at_base]:>10} |")
        lines.append(f"{r.switch:>13} {short(r.value):>9}{mark}  |" + "".join(cells))
    return "\n".join(lines)


def label(name: str, value) -> str:
    """A switch value as a self-explaining axis label: 'seed 42', 'not restored', 'stoch'."""
    if name == "restore_input":
        return "restored" if value else "not restored"
    if name == "seed":
        return f"seed {value}"
    return short(value)


# --- picture -----------------------------------------------------------------------------------

def grid_codes(outcomes: Sequence[Outcome], rows: Sequence[str], cols: Sequence[str]):
    """Arrange outcomes on a (row combinations) x (column combinations) grid.

    Returns:
        (codes, first, row_keys, col_keys): codes is an int array of shape
        (len(row_keys), len(col_keys)) with 2 pass, 1 fails otherwise,
        0 reproduces the reported failure, -1 not in the grid; first holds the
        first failing index as text ('' for passes); the keys are value tuples
        in grid order (original values first).
    """
    def keys(names):
        return list(dict.fromkeys(tuple(o.switches[n] for n in names) for o in outcomes))

    row_keys, col_keys = keys(rows), keys(cols)
    codes = np.full((len(row_keys), len(col_keys)), -1, dtype=int)
    first = np.full(codes.shape, "", dtype=object)
    for o in outcomes:
        i = row_keys.index(tuple(o.switches[n] for n in rows))
        j = col_keys.index(tuple(o.switches[n] for n in cols))
        codes[i, j] = outcome_class(o)
        first[i, j] = "" if o.passed else str(o.first_index)
    return codes, first, row_keys, col_keys


def plot_ablation_grid(ax, outcomes: Sequence[Outcome], rows: Sequence[str], cols: Sequence[str], *,
                       title: str = "", mark: Mapping[str, object] | None = None) -> np.ndarray:
    """Heatmap of the grid: one cell per combination, coloured by outcome, labelled with the
    first failing index; `mark` (e.g. the base test's switches) gets a black frame.
    Returns the codes array from `grid_codes`."""
    codes, first, row_keys, col_keys = grid_codes(outcomes, rows, cols)
    cmap = ListedColormap([REPORTED_COLOR, FAIL_COLOR, PASS_COLOR])
    ax.imshow(np.ma.masked_less(codes, 0), cmap=cmap, vmin=0, vmax=2, aspect="auto", interpolation="nearest")
    ax.grid(False)
    ax.set_yticks(range(len(row_keys)), fontsize=8,
                  labels=[" · ".join(label(n, v) for n, v in zip(rows, k, strict=True)) for k in row_keys])
    ax.set_xticks(range(len(col_keys)), fontsize=8,
                  labels=[" · ".join(label(n, v) for n, v in zip(cols, k, strict=True)) for k in col_keys],
                  rotation=60, ha="right", rotation_mode="anchor")
    for (i, j), text in np.ndenumerate(first):
        if text:
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color="white")
    ax.set_xticks(np.arange(-0.5, len(col_keys)), minor=True)
    ax.set_yticks(np.arange(-0.5, len(row_keys)), minor=True)
    ax.grid(which="minor", color="white", lw=0.8)
    ax.tick_params(which="minor", length=0)
    ax.set(xlabel=" · ".join(cols), ylabel=" · ".join(rows), title=title)
    handles = [mpl.patches.Patch(color=REPORTED_COLOR, label="fails: the reported failure"),
               mpl.patches.Patch(color=FAIL_COLOR, label="fails otherwise"),
               mpl.patches.Patch(color=PASS_COLOR, label="passes")]
    if mark is not None:
        i, j = row_keys.index(tuple(mark[n] for n in rows)), col_keys.index(tuple(mark[n] for n in cols))
        ax.add_patch(mpl.patches.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="black", lw=2.2))
        handles.append(mpl.patches.Patch(facecolor="none", edgecolor="black", lw=2.2, label="base test"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="cell number: first\nfailing index")
    return codes


def base_switches(axes: Mapping[str, Sequence], **overrides) -> dict:
    """The base test's value of every axis: the original's, with `overrides` (e.g. dtype, seed)."""
    base = {name: overrides.get(name, ORIGINAL.get(name, values[0])) for name, values in axes.items()}
    for name, value in base.items():
        if value not in axes[name]:
            raise ValueError(f"base value {name}={value!r} is not on the grid's axis {tuple(axes[name])}")
    return base


# --- the same question asked of lib -------------------------------------------------------------

@dataclass(frozen=True)
class LibOutcome:
    """lib.check_gradient on the dropout test for one (dtype, forward, step) setting.

    Attributes:
        dtype, forward ("seeded" or "fixed_mask"), step ("eps=..." or "dtype-aware").
        result: the GradCheckResult, or None when the checker refused the step.
        refusal: the checker's ValueError message when it refused ('' otherwise).
    """

    dtype: str
    forward: str
    step: str
    result: object
    refusal: str = ""

    @property
    def passed(self) -> bool:
        return self.result is not None and self.result.passed


def lib_grid(dtypes: Sequence[str], p: float, seed: int, size: int, eps: float) -> list[LibOutcome]:
    """lib.check_gradient (realised step; rtol=1e-3, atol=1e-6) over dtype x forward x step.

    The step is either the original `eps` or lib's dtype-aware default. lib has
    no nominal divisor and its dropout reseeds on every call, so the only
    switches left to vary are these three.
    """
    from lib.criteria import check_fixed_test, dropout_test

    rows = []
    for dtype in dtypes:
        test = dropout_test(dtype, p, seed, size)
        for step_label, step in ((f"eps={eps:g}", eps), ("dtype-aware", None)):
            try:
                results = check_fixed_test(test, eps=step)
            except ValueError as refusal:
                for forward in ("seeded", "fixed_mask"):
                    rows.append(LibOutcome(dtype, forward, step_label, None, str(refusal).split(":")[0]))
                continue
            rows.append(LibOutcome(dtype, "seeded", step_label, results["seeded forward"]))
            rows.append(LibOutcome(dtype, "fixed_mask", step_label, results["fixed-mask forward"]))
    return rows


def format_lib_grid(rows: Sequence[LibOutcome]) -> str:
    """One aligned line per lib run: dtype, forward, step, PASS/FAIL/refused, max err/tol, step width at 0."""
    lines = [f"{'dtype':>8} {'forward':>10} {'step':>12}  {'result':>7}  {'max err/tol':>11}  {'step at [0]':>11}"]
    for r in rows:
        if r.result is None:
            lines.append(f"{r.dtype:>8} {r.forward:>10} {r.step:>12}  {'refused':>7}  {'-':>11}  {'-':>11}  "
                         f"({r.refusal})")
        else:
            lines.append(f"{r.dtype:>8} {r.forward:>10} {r.step:>12}  {'PASS' if r.passed else 'FAIL':>7}  "
                         f"{r.result.max_error_ratio:>11.3g}  {r.result.step.ravel()[0]:>11.4g}")
    return "\n".join(lines)
