"""A small fixed sample of the real workbook under `python -m lib sweep`: no notebook crashes and no two
notebooks measure a fact differently, for the settings that once split them (seed=2; p=0.9 in float64).

Kept cheap on purpose: two of the fastest notebooks, which measure facts in common (01 reproduces the
failure; 03 runs the same check and draws the forward's masks), two sets, both notebooks at once.
"""

from __future__ import annotations

import json

import pytest

from lib.workbook.cli import main

pytestmark = pytest.mark.slow

SAMPLE = ["1", "3"]
SETS = ["seed=2", "p=0.9,dtype=float64"]


def test_a_fixed_sample_of_the_workbook_runs_clean_under_the_sets_that_once_split_it(tmp_path, capsys):
    table = tmp_path / "table.json"
    argv = ["sweep", *SAMPLE, *(a for s in SETS for a in ("--set", s)), "--jobs", "2",
            "--output", str(tmp_path / "sweep"), "--json", str(table)]
    code = main(argv)
    out = capsys.readouterr().out
    written = json.loads(table.read_text())
    problems = {s["label"]: (s["cells"], s["disagreements"]) for s in written["sets"] if not s["clean"]}
    assert code == 0, f"python -m lib {' '.join(argv)}: {problems}"
    assert out.rstrip().splitlines()[-1] == f"{len(SETS)} sets: {len(SETS)} clean, 0 with crashes, 0 with disagreements"
    assert all(cell not in ("CRASH", "FACTS") for s in written["sets"] for cell in s["cells"].values())
    assert [s["parameters"] for s in written["sets"]] == [{"seed": "2"}, {"p": "0.9", "dtype": "float64"}]
