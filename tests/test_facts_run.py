"""Facts the notebooks record: collected per notebook by the runner, cross-checked, and a disagreement fails the run.

Two tiny workbooks are run: one whose notebooks disagree on a fact (with
--jobs 2, so that the kernels are started by separate worker processes) and
one whose notebooks agree (--jobs 1).
"""

from __future__ import annotations

import json
import os

import pytest
from notebook_factory import write_notebook

from lib.workbook import facts, findings
from lib.workbook.cli import main

PARAMETERS = "seed: int = 1  # seed, in [0, 100]"
SHOW_FILE = "import os\nprint('facts file:', os.environ.get('WORKBOOK_FACTS'))"
RECORD = "from lib.workbook.facts import record_facts\nrecord_facts({})"
CONFIRMED = "from lib.workbook.verdict import Verdict\nVerdict('CONFIRMED', 'it fails at index 0').show()"


def _book(folder, name: str, recorded: str = "", verdict: str | None = None):
    cells = [SHOW_FILE, *([RECORD.format(recorded)] if recorded else [])]
    return write_notebook(folder / name, PARAMETERS, cells, verdict)


def _run(tmp_path, books: dict[str, str], jobs: str):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    for name, recorded in books.items():
        _book(folder, name, recorded, CONFIRMED if name.startswith("01") else None)
    out = tmp_path / "out"
    code = main(["run", "--notebook-dir", str(folder), "--output", str(out), "--jobs", jobs])
    return code, out, json.loads((out / "summary.json").read_text())


@pytest.fixture(scope="module")
def disagreeing(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("disagree"), {
        "01_first.ipynb": "failure_index=0, step_ratio=1.0013580322265625, forward_deterministic=True",
        "02_second.ipynb": "failure_index=1, step_ratio=1.0013580322265625",
        "03_silent.ipynb": "",
    }, jobs="2")


@pytest.fixture(scope="module")
def agreeing(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("agree"), {
        "01_first.ipynb": "failure_index=0, step_ratio=1.0013580322265625",
        "02_second.ipynb": "failure_index=0, step_ratio=1.0013580322265625 * (1 + 1e-12)",
    }, jobs="1")


def test_facts_that_agree_leave_the_run_clean(agreeing):
    code, out, record = agreeing
    assert code == 0
    assert record["disagreements"] == [] and record["contradictions"] == []
    measured = record["notebooks"][0]["facts"]
    assert {k: v for k, v in measured.items() if k != "test"} == {"failure_index": 0, "step_ratio": 1.0013580322265625}
    markdown = (out / "summary.md").read_text()
    assert "Facts that disagree" not in markdown
    assert "- failure_index: 0 (01, 02)" in markdown


def test_facts_that_disagree_fail_the_run_and_the_summary_names_both_notebooks_and_values(disagreeing):
    code, out, record = disagreeing
    assert code == 1
    line = "failure_index: 01_first measured 0, 02_second measured 1"
    assert record["disagreements"] == [{"fact": "failure_index", "notebooks": ["01_first", "02_second"],
                                        "values": [0, 1], "text": line}]
    assert {"label": "Facts disagree", "text": line, "notebook": ""} in record["found"]
    markdown = (out / "summary.md").read_text()
    facts_section = markdown.split("## Facts that disagree")[1].split("##")[0]
    assert f"- {line}" in facts_section
    assert f"**Facts disagree**: {line}" in markdown.split("## What this run found")[1]
    assert "- failure_index: 0 (01); 1 (02)" in markdown


def test_the_terminal_says_which_facts_disagree(tmp_path, capsys):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    # no kernel: the summary is printed from the runs, as after an execution
    from lib.workbook import runs
    from lib.workbook.runner import NotebookRun

    done = [NotebookRun(folder / "01_a.ipynb", tmp_path / "01_a.ipynb", "ok", 1.0, facts={"mask_matches": True}),
            NotebookRun(folder / "02_b.ipynb", tmp_path / "02_b.ipynb", "ok", 1.0, facts={"mask_matches": False})]
    text = runs.summary_text(done, 2.0)
    assert "1 fact(s) disagree" in text
    assert "Facts disagree: mask_matches: 01_a measured True, 02_b measured False" in text
    outcome = runs._outcome(done, None, 2)
    assert outcome.code == 1
    assert "FACTS DISAGREE mask_matches: 01_a measured True" in capsys.readouterr().err


def test_a_notebook_that_records_nothing_is_fine(disagreeing):
    _, out, record = disagreeing
    silent = record["notebooks"][2]
    assert silent["status"] == "ok" and silent["facts"] == {}
    assert not (out / "03_silent.facts.json").exists()


def test_the_facts_file_reaches_kernels_started_by_worker_processes(disagreeing):
    _, out, record = disagreeing
    assert record["notebooks"][0]["facts"]["forward_deterministic"] is True
    printed = json.dumps(json.loads((out / "01_first.ipynb").read_text())["cells"])
    assert "01_first.facts.json" in printed
    assert os.environ.get(facts.FACTS_FILE) is None  # the runner's own environment is left as it was


def test_the_facts_files_are_listed_so_that_the_next_run_removes_them(disagreeing):
    _, out, record = disagreeing
    assert {"01_first.facts.json", "02_second.facts.json"} <= set(record["files"])
    assert json.loads((out / "01_first.facts.json").read_text())["failure_index"] == 0


def test_floats_agree_within_the_relative_tolerance_and_none_is_not_zero():
    assert facts.disagreements({"a": {"step_ratio": 1.0}, "b": {"step_ratio": 1.0 + 1e-12}}) == []
    assert facts.disagreements({"a": {"failure_ratio": None}, "b": {"failure_ratio": 0.0}}) == [
        "failure_ratio: a measured None, b measured 0.0"]
    assert facts.conflicts({"a": {"failure_index": 2}, "b": {}, "c": {"failure_index": 3}}) == [
        ("failure_index", "a", 2, "c", 3)]


def _entry(file: str, verdict: str, recorded: dict) -> dict:
    return {"file": file, "title": file, "status": "ok", "verdict": verdict, "facts": recorded}


def test_a_verdict_read_as_reproducing_the_failure_must_not_contradict_its_own_facts():
    passes = {"failure_index": None}
    reproduced = _entry("01_overview.ipynb", "CONFIRMED - it fails", passes)
    assert findings.contradictions([reproduced]) == [
        ("01_overview", "its verdict reads as reproducing the failure (CONFIRMED), but it recorded "
                        "failure_index None: the failure-era check passes")]
    assert findings.problems([reproduced])
    labels = [label for label, _, _ in findings.answer([reproduced])]
    assert "Verdict contradicts its facts" in labels
    # not read as reproducing the failure, or facts that agree with it: nothing to say
    assert findings.contradictions([_entry("01_overview.ipynb", "REFUTED - it passes", passes)]) == []
    assert findings.contradictions([_entry("01_overview.ipynb", "CONFIRMED - x", {"failure_index": 0})]) == []
    assert findings.contradictions([_entry("12_scaling.ipynb", "CONFIRMED - found", passes)]) == []


def test_in_jupyterlab_record_facts_checks_and_writes_nothing(monkeypatch, tmp_path):
    monkeypatch.delenv(facts.FACTS_FILE, raising=False)
    monkeypatch.chdir(tmp_path)
    assert facts.record_facts(failure_index=None) == {"failure_index": None}
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="unknown fact"):
        facts.record_facts(failure_idx=3)


def test_facts_are_compared_only_between_notebooks_that_measured_the_same_test(tmp_path, monkeypatch):
    from lib.workbook import facts

    # A notebook without `size` measures the five-element test even when the run sets size=1000.
    target = tmp_path / "a.facts.json"
    monkeypatch.setenv(facts.FACTS_FILE, str(target))
    # a notebook's parameters are its globals, where record_facts reads them
    exec("record_facts(failure_index=3)", {"record_facts": facts.record_facts, "size": 1000, "dtype": "float32"})
    recorded = facts.read_facts(target)
    assert recorded[facts.TEST_KEY] == {"size": 1000, "dtype": "float32"}
    five = {"failure_index": 0}  # no test parameters: the defaults, size 5
    assert facts.conflicts({"01": five, "06": recorded}) == []
    assert facts.conflicts({"01": five, "06": {**recorded, facts.TEST_KEY: {"size": 5}}}) == [
        ("failure_index", "01", 0, "06", 3)]
