"""Aligned text tables for the notebooks: one helper instead of an f-string per cell.

A thin layer over `tabulate` with the workbook's conventions: right-aligned
numbers, a header rule, float columns formatted by one format string (or one
per column), so a learner reads a table the same way in every notebook.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tabulate import tabulate


def table(rows: Iterable[Sequence], headers: Sequence[str], *, floatfmt: str | Sequence[str] = "g",
          intfmt: str = "", align: str | Sequence[str] | None = None, missingval: str = "") -> str:
    """The rows as an aligned plain-text table with a header rule.

    Args:
        rows: one sequence of cells per row (numbers, strings, bools, numpy scalars).
        headers: one name per column.
        floatfmt: format of float cells, e.g. ".4g" or ".3e"; a sequence gives one per column.
        intfmt: format of integer cells, e.g. "," for thousands separators.
        align: "left", "right" or "center" for every column, or one per column;
            None puts numbers right and text left.
        missingval: what a None cell prints as.
    Returns:
        The table as one string, lines separated by newlines (no trailing newline).
    """
    rows = [[cell.item() if hasattr(cell, "item") else cell for cell in row] for row in rows]
    if isinstance(align, str):
        align = [align] * len(headers)
    return tabulate(rows, headers=list(headers), tablefmt="simple", floatfmt=floatfmt, intfmt=intfmt,
                    colalign=align, missingval=missingval)


def show_table(rows: Iterable[Sequence], headers: Sequence[str], **options) -> None:
    """Print `table(rows, headers, **options)`."""
    print(table(rows, headers, **options))
