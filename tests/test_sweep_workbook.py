"""`python -m lib sweep`: drawn sets lie in every declared range, named sets are checked, and the table and
exit code say what each set's run found. Only the last test starts kernels (two tiny ones)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from notebook_factory import write_notebook

import lib.workbook.runner as workbook
from lib.workbook import draws, findings, runs, sweep
from lib.workbook.cli import main
from lib.workbook.parameters import WorkbookError, declared_parameters, resolve_parameters
from lib.workbook.runner import NotebookRun

NOTEBOOKS = workbook.discover(workbook.NOTEBOOK_DIR)


def _assert_accepted(values: dict, selected: list[Path]) -> None:
    for path in selected:
        for name, info in declared_parameters(path).items():
            if name in values and info["range"] is not None:
                assert info["range"].accepts(values[name]), (path.name, name, values[name])
    resolve_parameters(selected, [(n, draws.text(v)) for n, v in values.items()])  # the runner's own check


@pytest.mark.parametrize("seed", range(0, 120, 3))
def test_drawn_sets_hold_only_values_every_selected_notebook_accepts(seed):
    selected = random.Random(seed).sample(NOTEBOOKS, k=1 + seed % 5)
    for values in draws.draw_sets(seed, 2, selected):
        _assert_accepted(values, selected)


def test_draws_are_sensible_and_repeat_with_their_seed():
    sets = draws.draw_sets(11, 60, NOTEBOOKS)
    assert sets == draws.draw_sets(11, 60, NOTEBOOKS) != draws.draw_sets(12, 60, NOTEBOOKS)
    eps = [s["eps"] for s in sets]
    assert min(eps) >= 1e-7 and max(eps) <= 1e-2
    assert sum(e < 1e-5 for e in eps) > 10 and sum(e > 1e-4 for e in eps) > 10  # log-uniform: every decade
    assert {s["dtype"] for s in sets} == {"float16", "float32", "float64"}
    assert all(isinstance(s["seed"], int) and 0 <= s["seed"] <= 100 for s in sets)
    assert all(isinstance(s["size"], int) and 1 <= s["size"] <= 20 for s in sets)
    assert all(0 <= s["p"] <= 0.9 for s in sets) and all(s["fault"] != 0 for s in sets)
    assert {s["restore_input"] for s in sets} == {True, False}
    assert "commit" not in sets[0] and "checkout" not in sets[0]  # free strings keep their defaults


def test_draws_keep_to_the_intersection_of_unusual_ranges(tmp_path):
    first = write_notebook(tmp_path / "01_a.ipynb", "x: float = 0.97  # in (0.95, 0.99]\n"
                           "k: int = 500  # in [400, 600]\nmode: str = 'b'  # one of {a, b}", [])
    second = write_notebook(tmp_path / "02_b.ipynb", "x: float = 0.97  # in [0.9, 0.98)\n"
                            "mode: str = 'b'  # one of {b, c}\nflag: bool = True  # a switch", [])
    sets = draws.draw_sets(3, 200, [first, second])
    assert {s["mode"] for s in sets} == {"b"} and {s["flag"] for s in sets} == {True, False}
    assert all(0.95 < s["x"] < 0.98 and 400 <= s["k"] <= 500 for s in sets)
    for values in sets[:5]:
        _assert_accepted(values, [first, second])


def test_a_named_set_is_parsed_and_checked_by_name():
    assert draws.parse_set("seed=2,p=0.9, dtype=float64") == [("seed", "2"), ("p", "0.9"), ("dtype", "float64")]
    assert draws.parse_set("values=0.1,-0.5,seed=2") == [("values", "0.1,-0.5"), ("seed", "2")]
    for bad, message in [("seed", "NAME=VALUE"), ("=2", "NAME=VALUE"), ("seed=2,seed=3", "more than once")]:
        with pytest.raises(WorkbookError, match=message):
            draws.parse_set(bad)
    with pytest.raises(WorkbookError, match=r"--set p=1\.5: .*accept p in \[0, 1\)"):
        draws.check_set("p=1.5", NOTEBOOKS[:3])


@pytest.mark.parametrize("argv, message", [
    (["-n", "0"], "argument -n: must be an integer in [1, inf); got 0"),
    (["--jobs", "0"], "argument --jobs: must be an integer in [1, inf); got 0"),
])
def test_bad_counts_are_refused_by_the_parser(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit):
        main(["sweep", "--output", str(tmp_path / "out"), *argv])
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("given, message", [
    ("sed=2", "--set sed=2: parameter 'sed' is not declared by any selected notebook (did you mean 'seed'?)"),
    ("seed=2,p=1.5", "--set seed=2,p=1.5: parameter p=1.5 is refused before any notebook runs"),
    ("dtype=float128", "accept dtype one of {float16, float32, float64}"),
])
def test_bad_sets_are_refused_before_any_kernel_starts(given, message, capsys, tmp_path):
    out = tmp_path / "out"
    assert main(["sweep", "1-4", "--set", "seed=3", "--set", given, "--output", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def _run(folder: Path, name: str, status: str = "ok", verdict: str = "-", recorded: dict | None = None):
    return NotebookRun(folder / name, folder / name, status, 1.0, verdict, facts=recorded or {})


def _outcome(done: list) -> runs.Outcome:
    found = runs.entries(done)
    code = 1 if findings.problems(found) or any(r.status != "ok" for r in done) else 0
    return runs.Outcome(code, done, findings.problems(found), findings.fact_conflicts(found),
                        findings.contradictions(found))


def test_cells_say_crash_facts_the_verdict_word_or_ok(tmp_path):
    clean = sweep.fill(sweep.Row("1*", [("seed", "2")], tmp_path), _outcome([
        _run(tmp_path, "01_a.ipynb", verdict="CONFIRMED - it fails", recorded={"failure_index": 0}),
        _run(tmp_path, "02_b.ipynb", recorded={"failure_index": 0})]))
    broken = sweep.fill(sweep.Row("2", [("seed", "7"), ("p", "0.9")], tmp_path), _outcome([
        _run(tmp_path, "01_a.ipynb", verdict="CONFIRMED - it fails", recorded={"failure_index": 0}),
        _run(tmp_path, "02_b.ipynb", recorded={"failure_index": 3}),
        _run(tmp_path, "03_c.ipynb", status="failed")]))
    assert clean.cells == {"01": "CONFIRMED", "02": "ok"} and clean.clean
    assert broken.cells == {"01": "FACTS", "02": "FACTS", "03": "CRASH"} and not broken.clean
    text = sweep.table([clean, broken], ["01", "02", "03"])
    assert text.splitlines()[-3].split() == ["1*", "CONFIRMED", "ok", "-", "seed=2"]
    assert text.splitlines()[-2].split() == ["2", "FACTS", "FACTS", "CRASH", "seed=7,", "p=0.9"]
    assert text.splitlines()[-1] == "2 sets: 1 clean, 1 with crashes, 1 with disagreements"


def test_a_sweep_with_a_crashing_set_tabulates_it_and_exits_1(tmp_path, capsys):
    books = tmp_path / "notebooks"
    books.mkdir()
    write_notebook(books / "01_only.ipynb", "seed: int = 1  # seed, in [0, 100]",
                   ["if seed == 3:\n    raise RuntimeError('planted crash')"],
                   "from lib.workbook.verdict import Verdict\nVerdict('REFUTED', f'seed {seed}').show()")
    table = tmp_path / "table.json"
    code = main(["sweep", "--notebook-dir", str(books), "--output", str(tmp_path / "out"), "--set", "seed=1",
                 "--set", "seed=3", "--jobs", "2", "--json", str(table)])
    out = capsys.readouterr().out
    assert code == 1
    assert f"Table written to {table}" in out
    assert out.rstrip().splitlines()[-1] == "2 sets: 1 clean, 1 with crashes, 0 with disagreements"
    written = json.loads(table.read_text())
    assert [s["cells"] for s in written["sets"]] == [{"01": "REFUTED"}, {"01": "CRASH"}]
    assert [s["parameters"] for s in written["sets"]] == [{"seed": "1"}, {"seed": "3"}]
    assert written["seed"] is None and written["summary"].startswith("2 sets: 1 clean")
    assert json.loads((tmp_path / "out" / "set-02" / "summary.json").read_text())["notebooks"][0]["status"] == "failed"
