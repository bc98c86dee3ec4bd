"""Progress while notebooks run: a line per started notebook, then its cell and time, quiet for short runs."""

from __future__ import annotations

import re

from notebook_factory import write_notebook

import lib.workbook.runner as workbook
from lib.workbook import execution, progress
from lib.workbook.cli import main


def test_progress_is_quiet_at_first_then_prints_changed_cells_at_most_every_few_seconds(tmp_path):
    file = progress.progress_file(tmp_path / "06_long.ipynb")
    tracker = progress.Progress(tmp_path)
    start = 1000.0
    progress.write_progress(file, 1, 41, start)
    assert tracker.poll(start + 0.5) == ["  started 06_long.ipynb (41 code cells)"]
    progress.write_progress(file, 5, 41, start)
    assert tracker.poll(start + 6) == []  # a short run prints nothing periodic
    assert tracker.poll(start + 10.2) == ["  06 cell 5/41, 10 s"]
    progress.write_progress(file, 6, 41, start)
    assert tracker.poll(start + 12) == []  # changed, but the last line is 2 s old
    assert tracker.poll(start + 15.3) == ["  06 cell 6/41, 15 s"]
    assert tracker.poll(start + 30) == []  # unchanged: nothing to say ...
    assert tracker.poll(start + 45.4) == ["  06 cell 6/41, 45 s"]  # ... until a long cell has run half a minute more
    tracker.finished(tmp_path / "06_long.ipynb")
    progress.write_progress(file, 7, 41, start)
    assert tracker.poll(start + 80) == []


def test_every_notebook_running_at_once_is_followed(tmp_path):
    tracker = progress.Progress(tmp_path)
    for name in ("01_a", "02_b"):
        progress.write_progress(progress.progress_file(tmp_path / f"{name}.ipynb"), 1, 20, 0.0)
    assert len(tracker.poll(1.0)) == 2
    for name, cell in (("01_a", 3), ("02_b", 9)):
        progress.write_progress(progress.progress_file(tmp_path / f"{name}.ipynb"), cell, 20, 0.0)
    assert tracker.poll(20.0) == ["  01 cell 3/20, 20 s", "  02 cell 9/20, 20 s"]


def test_the_worker_reports_the_source_code_cell_it_is_running(tmp_path, monkeypatch):
    source = write_notebook(tmp_path / "01_two.ipynb", "n: int = 1  # a number, in [1, 9]", ["print(n)"])
    file = tmp_path / "out" / ".01_two.progress"
    file.parent.mkdir()
    file.write_text("0 2 0.0\n")  # left by the worker when the notebook ends: removed
    seen = []
    monkeypatch.setattr(progress, "write_progress", lambda path, cell, cells, started: seen.append((cell, cells)))
    run = workbook.execute(source, tmp_path / "out" / source.name, {"n": 2}, file)
    assert run.status == "ok"
    assert seen == [(0, 2), (1, 2), (2, 2)]  # the injected parameters cell is not counted
    assert not file.exists()


def test_a_run_of_two_notebooks_at_once_prints_their_cells(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(progress, "QUIET", 0.0)
    monkeypatch.setattr(progress, "EVERY", 0.0)
    monkeypatch.setattr(execution, "POLL", 0.2)
    books = tmp_path / "nb"
    books.mkdir()
    for name in ("01_a", "02_b"):
        write_notebook(books / f"{name}.ipynb", "n: int = 1  # a number, in [1, 9]",
                       ["import time\ntime.sleep(1.5)", "time.sleep(1.5)"])
    monkeypatch.chdir(tmp_path)  # a relative --output, while papermill runs each notebook in its own folder
    assert main(["run", "--notebook-dir", "nb", "--output", "out", "--jobs", "2"]) == 0
    printed = capsys.readouterr().out
    assert "started 01_a.ipynb (3 code cells)" in printed and "started 02_b.ipynb (3 code cells)" in printed
    assert re.search(r"^  01 cell [23]/3, \d+ s$", printed, re.M) and re.search(r"^  02 cell [23]/3, \d+ s$", printed,
                                                                                re.M)
    assert not list((tmp_path / "out").glob(".*"))  # no progress file, no staging folder left behind
