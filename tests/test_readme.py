"""The README shows real output: its example is run and compared, its figures match the notebooks."""

from __future__ import annotations

import base64
import contextlib
import io
import itertools
import re
from pathlib import Path

import nbformat
import pytest

from lib.workbook.report import figures

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_the_checker_examples_print_what_the_readme_shows():
    section = README[README.index("## Use the checker on your own function"):README.index("For large inputs")]
    blocks = re.findall(r"```(python)?\n(.*?)```", section, flags=re.DOTALL)
    pairs = [(code, shown) for (lang, code), (_, shown) in itertools.pairwise(blocks) if lang == "python"]
    assert len(pairs) == 2
    namespace: dict = {}
    for code, shown in pairs:  # later examples use what earlier ones defined
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(code, "README example", "exec"), namespace)
        assert printed.getvalue() == shown


@pytest.mark.parametrize("line", [line for line in README.splitlines() if line.startswith("![")])
def test_readme_figures_exist_and_match_the_stored_notebooks(line):
    target = ROOT / re.search(r"\((.*?)\)", line).group(1)
    assert target.exists()
    # docs/update_figures.py lists where each figure comes from
    source = (ROOT / "docs" / "update_figures.py").read_text()
    name, index = re.search(rf'\("(\S+\.ipynb)", (\d+), "{target.name}"\)', source).groups()
    notebook = nbformat.read(str(ROOT / "notebooks" / name), as_version=4)
    assert target.read_bytes() == base64.b64decode(figures(notebook)[int(index)]), "run docs/update_figures.py"


def test_readme_links_every_notebook():
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        assert f"(notebooks/{path.name})" in README


def _learner_paths() -> list[tuple[list[str], int]]:
    """(the notebooks a row of the learner's paths reads in order, the minutes it states)."""
    rows = []
    for line in README.split("## A learner's path")[1].split("\n## ")[0].splitlines():
        cells = line.split(" | ")
        stated = re.search(r"about (\d+) min", line)
        if len(cells) >= 3 and stated:
            rows.append((re.findall(r"\(notebooks/(\d\d_[^)]+\.ipynb)\)", cells[1]), int(stated.group(1))))
    return rows


def test_every_learners_path_states_its_reading_time_as_computed():
    """The minutes a path states are lib.workbook.reading_time's estimate, to the nearest 5."""
    from lib.workbook.reading_time import path_minutes

    rows = _learner_paths()
    assert len(rows) >= 4, "every learner's path row states 'about N min'"
    for notebooks, stated in rows:
        computed = path_minutes([ROOT / "notebooks" / name for name in notebooks])
        assert stated == 5 * round(computed / 5), f"{notebooks}: README says {stated} min, computed {computed:.0f}"
