"""The headless runner: selection, parameters, failures, stored-output hygiene."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output
from notebook_factory import write_notebook

import lib.workbook.runner as workbook
from lib.workbook import processes, report, verdict
from lib.workbook.cli import build_parser, main


def _notebook(path: Path, parameters: str, body: str, verdict: str | None = None) -> Path:
    return write_notebook(path, parameters, [body], verdict)


@pytest.fixture
def tiny_workbook(tmp_path):
    """Two small notebooks: one passes with a verdict, one fails when `boom` is set."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    _notebook(folder / "01_first.ipynb", 'seed: int = 42  # RNG seed\np: float = 0.3  # drop probability',
              "value = seed * 2\nprint(value)",
              "from lib.workbook.verdict import Verdict\nVerdict('REFUTED' if seed == 42 else 'CONFIRMED', "
              "f'seed was {seed}').show()")
    _notebook(folder / "02_second.ipynb", "boom: bool = False  # raise on purpose\nseed: int = 1  # RNG seed",
              "if boom:\n    raise RuntimeError('planted failure')\nprint('fine')")
    (folder / "notes.ipynb").write_text("{}")  # not numbered: ignored
    return folder


def test_discover_takes_numbered_notebooks_in_order(tiny_workbook):
    assert [p.name for p in workbook.discover(tiny_workbook)] == ["01_first.ipynb", "02_second.ipynb"]


@pytest.mark.parametrize(("wanted", "expected"), [([], [1, 2]), (["2"], [2]), (["01"], [1]), (["1-2"], [1, 2])])
def test_select_by_number_and_range(tiny_workbook, wanted, expected):
    chosen = workbook.select(workbook.discover(tiny_workbook), wanted)
    assert [int(p.name[:2]) for p in chosen] == expected


@pytest.mark.parametrize("wanted", [["7"], ["x"], ["3-4"]])
def test_select_refuses_unknown_numbers(tiny_workbook, wanted):
    with pytest.raises(workbook.WorkbookError, match="notebook"):
        workbook.select(workbook.discover(tiny_workbook), wanted)


def test_parameters_reach_every_notebook_that_declares_them(tiny_workbook):
    books = workbook.discover(tiny_workbook)
    resolved = workbook.resolve_parameters(books, [("seed", "7"), ("p", "0.5")])
    assert resolved[books[0]] == {"seed": 7, "p": 0.5}
    assert resolved[books[1]] == {"seed": 7}


def test_unknown_parameter_is_refused_with_the_valid_names(tiny_workbook):
    books = workbook.discover(tiny_workbook)
    with pytest.raises(workbook.WorkbookError, match=r"'dtyp'.*valid names: boom, p, seed"):
        workbook.resolve_parameters(books, [("dtyp", "float64")])


@pytest.mark.parametrize(("name", "value", "accepted"), [
    ("p", "1.0", r"\[0, 1\)"), ("p", "nan", r"\[0, 1\)"), ("seed", "-1", r"\[0, 9223372036854775807\]"),
    ("seed", "1.5", "int"),
    ("boom", "maybe", "true or false")])
def test_invalid_parameter_values_are_refused_before_running(tiny_workbook, name, value, accepted):
    books = workbook.discover(tiny_workbook)
    with pytest.raises(workbook.WorkbookError, match=accepted):
        workbook.resolve_parameters(books, [(name, value)])


def test_output_folder_may_not_be_the_source_folder(tiny_workbook):
    with pytest.raises(workbook.WorkbookError, match="never overwrite"):
        workbook.check_output_folder(tiny_workbook, tiny_workbook)


def test_strip_run_metadata_keeps_execution_counts():
    nb = new_notebook(cells=[new_code_cell("1")])
    nb.metadata["papermill"] = {"duration": 1.0}
    nb.cells[0].execution_count = 3
    nb.cells[0].metadata.update({"papermill": {"duration": 0.1}, "execution": {"iopub.status.idle": "t"},
                                 "tags": ["injected-parameters"]})
    clean = workbook.strip_run_metadata(nb)
    assert "papermill" not in clean.metadata
    assert clean.cells[0].execution_count == 3
    assert clean.cells[0].metadata == {"tags": []}
    assert "papermill" in nb.metadata  # the input is left alone


def test_run_executes_copies_reads_verdicts_and_leaves_sources(tiny_workbook, tmp_path, capsys):
    before = {p.name: p.read_bytes() for p in tiny_workbook.iterdir()}
    out = tmp_path / "build"
    code = main(["run", "--notebook-dir", str(tiny_workbook), "--output", str(out), "-p", "seed", "5", "--html"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "CONFIRMED - seed was 5" in printed
    assert "notebooks: 2 ok, 0 failed" in printed
    assert {p.name: p.read_bytes() for p in tiny_workbook.iterdir()} == before
    executed = nbformat.read(str(out / "01_first.ipynb"), as_version=4)
    assert workbook.read_verdict(executed) == "CONFIRMED - seed was 5"
    index = (out / "index.html").read_text()
    assert "01_first.html" in index and "02_second.html" in index
    assert (out / "01_first.html").exists()


def test_failing_notebook_names_the_notebook_and_cell_and_exits_nonzero(tiny_workbook, tmp_path, capsys):
    code = main(["run", "2", "--notebook-dir", str(tiny_workbook), "--output", str(tmp_path / "b"),
                 "-p", "boom", "true"])
    captured = capsys.readouterr()
    assert code == 1
    assert "02_second.ipynb: cell" in captured.err
    assert "RuntimeError: planted failure" in captured.err


def test_update_sources_rewrites_only_on_success(tiny_workbook, tmp_path):
    source = tiny_workbook / "01_first.ipynb"
    source.chmod(0o644)
    code = main(["run", "1", "--notebook-dir", str(tiny_workbook), "--output", str(tmp_path / "b"),
                 "--update-sources"])
    assert code == 0
    assert source.stat().st_mode & 0o777 == 0o644  # a rewritten source keeps its permissions
    stored = json.loads(source.read_text())
    assert "papermill" not in stored["metadata"]
    code_cells = [c for c in stored["cells"] if c["cell_type"] == "code"]
    assert all(c["execution_count"] for c in code_cells)
    assert "Verdict: REFUTED - seed was 42" in "".join(code_cells[-1]["outputs"][0]["text"])


def test_failed_update_leaves_the_source_untouched(tiny_workbook, tmp_path):
    source = tiny_workbook / "02_second.ipynb"
    nb = nbformat.read(str(source), as_version=4)
    nb.cells[1].source = "boom: bool = True  # raise on purpose\nseed: int = 1  # RNG seed"
    nbformat.write(nb, str(source))
    before = source.read_bytes()
    code = main(["run", "2", "--notebook-dir", str(tiny_workbook), "--output", str(tmp_path / "b"),
                 "--update-sources"])
    assert code == 1
    assert source.read_bytes() == before


def test_update_sources_refuses_parameters(tiny_workbook, capsys):
    assert main(["run", "--notebook-dir", str(tiny_workbook), "--update-sources", "-p", "seed", "1"]) == 2
    assert "cannot be combined" in capsys.readouterr().err


def test_cli_help_and_usage_errors():
    done = subprocess.run([sys.executable, "-m", "lib", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "diagnose" in done.stdout and "run" in done.stdout
    done = subprocess.run([sys.executable, "-m", "lib", "run", "-p", "nonsense", "1"], capture_output=True,
                          text=True)
    assert done.returncode == 2 and "valid names" in done.stderr


def test_a_dead_kernel_is_a_failed_notebook_not_a_crash(tiny_workbook, tmp_path, capsys):
    _notebook(tiny_workbook / "03_dies.ipynb", "seed: int = 1  # RNG seed", "import os\nos._exit(3)")
    code = main(["run", "2-3", "--notebook-dir", str(tiny_workbook), "--output", str(tmp_path / "b")])
    captured = capsys.readouterr()
    assert code == 1
    assert "notebooks: 1 ok, 1 failed" in captured.out  # notebook 02 still ran and is summarised
    # The cell that killed the kernel is named, counted in the source (papermill adds a cell).
    assert "03_dies.ipynb: cell 2 ('import os') DeadKernelError" in captured.err


def test_a_failing_cell_is_named_by_its_place_in_the_source(tiny_workbook, tmp_path, capsys):
    # papermill counts its injected-parameters cell; the message must count the source's cells
    code = main(["run", "2", "--notebook-dir", str(tiny_workbook), "--output", str(tmp_path / "b"),
                 "-p", "boom", "true"])
    assert code == 1
    assert "02_second.ipynb: cell 2 ('if boom:') raised RuntimeError" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["inside", "file"])
def test_output_inside_the_notebooks_or_onto_a_file_is_refused(tiny_workbook, tmp_path, where):
    target = tiny_workbook / "out" if where == "inside" else tmp_path / "a-file"
    if where == "file":
        target.write_text("keep me")
    with pytest.raises(workbook.WorkbookError, match="--output must"):
        workbook.check_output_folder(target, tiny_workbook)


def test_a_backwards_range_is_explained(tiny_workbook):
    with pytest.raises(workbook.WorkbookError, match="runs backwards; write 1-2"):
        workbook.select(workbook.discover(tiny_workbook), ["2-1"])


@pytest.mark.parametrize(("name", "value", "accepted"), [
    ("rng", "bogus", r"13_playground.ipynb accepts rng one of \{reseed, global\}"),
    ("n_max", "0", r"12_scaling_and_localisation.ipynb accepts n_max as an integer in \[100, 10\*\*7\]"),
    ("fault", "0", r"12_scaling_and_localisation.ipynb accepts fault in \(-inf, inf\) except 0")])
def test_notebook_specific_parameters_are_checked_before_any_kernel_starts(name, value, accepted):
    with pytest.raises(workbook.WorkbookError, match=accepted):
        workbook.resolve_parameters(workbook.discover(), [(name, value)])


def test_widget_views_are_stored_as_plain_text_only():
    from nbformat.v4 import new_output

    cell = new_code_cell("w")
    cell.outputs = [new_output("display_data", data={workbook.WIDGET_VIEW: {"model_id": "abc"},
                                                     "text/plain": "VBox()"})]
    clean = workbook.strip_run_metadata(new_notebook(cells=[cell]))
    assert clean.cells[0].outputs[0]["data"] == {"text/plain": "VBox()"}


@pytest.mark.parametrize("argv, expected", [
    (["-p", "eps", "-1e-5"], ("eps", "-1e-5")),
    (["-p", "dtype=float64"], ("dtype", "float64")),
    (["--parameter", "seed", "7"], ("seed", "7")),
])
def test_parameters_take_name_value_name_equals_value_and_negative_numbers(argv, expected):
    from lib.workbook.cli import _joined_parameters, build_parser

    args = build_parser().parse_args(["run", *_joined_parameters(argv)])
    assert [workbook.split_parameter(p) for p in args.parameter] == [expected]


def test_a_misspelt_parameter_gets_a_suggestion():
    with pytest.raises(workbook.WorkbookError, match=r"'sede' is not declared .* \(did you mean 'seed'\?\)"):
        workbook.resolve_parameters(workbook.select(workbook.discover(), ["1"]), [("sede", "3")])


def test_an_unannotated_parameter_takes_the_type_of_its_default(tmp_path):
    notebook = write_notebook(tmp_path / "01_plain.ipynb", "count = 3  # how many", ["print(count * 2)"])
    assert workbook.declared_parameters(notebook)["count"]["type"] == "int"
    assert workbook.resolve_parameters([notebook], [("count", "5")])[notebook] == {"count": 5}


def test_a_run_does_not_print_the_kernels_transport_warning(tmp_path):
    (tmp_path / "nb").mkdir()
    notebook = write_notebook(tmp_path / "nb" / "01_quiet.ipynb", "n: int = 1  # a number", ["print(n)"])
    done = subprocess.run([sys.executable, "-m", "lib", "run", "--notebook-dir", str(tmp_path / "nb"), "--output",
                           str(tmp_path / "out")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "without encryption" not in done.stdout + done.stderr
    assert "[IPKernelApp]" not in done.stdout + done.stderr  # no line of the kernel's own log
    assert notebook.exists()


def test_the_command_line_without_numpy_says_what_to_install(tmp_path):
    # a stand-in numpy that is "not installed", found before the real one
    (tmp_path / "numpy").mkdir()
    (tmp_path / "numpy" / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'numpy'\", "
                                                    "name='numpy')\n")
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-m", "lib", "run"], capture_output=True, text=True, cwd=root,
                          env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: numpy is not installed for {sys.executable}; run `pip install -r requirements.txt` in the "
        "repository first"]


def test_every_run_leaves_a_summary_with_full_verdicts_parameters_and_versions(tmp_path):
    from lib.workbook.cli import main

    (tmp_path / "nb").mkdir()
    long_reason = "a reason " * 20
    write_notebook(tmp_path / "nb" / "01_first.ipynb", "n: int = 1  # a number", ["print(n)"],
                   verdict=f"print('Verdict: CONFIRMED - {long_reason.strip()}')", heading="# 01 · First")
    assert main(["run", "--notebook-dir", str(tmp_path / "nb"), "--output", str(tmp_path / "out"),
                 "-p", "n=4"]) == 0
    record = json.loads((tmp_path / "out" / "summary.json").read_text())
    (entry,) = record["notebooks"]
    assert entry["title"] == "01 · First" and entry["status"] == "ok"
    assert entry["verdict"] == f"CONFIRMED - {long_reason.strip()}"  # not cut at 100 characters
    assert entry["parameters"] == {"n": 4}
    assert set(record["versions"]) >= {"python", "numpy", "ipykernel", "dropout-gradcheck-workbook"}
    assert record["git_revision"]
    markdown = (tmp_path / "out" / "summary.md").read_text()
    assert "| 01 · First | ok |" in markdown and "n=4" in markdown
    assert record["earlier_runs"] == []
    # a stale executed notebook from an earlier run is named as such
    (tmp_path / "out" / "02_old.ipynb").write_text("{}")
    assert main(["run", "--notebook-dir", str(tmp_path / "nb"), "--output", str(tmp_path / "out")]) == 0
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["earlier_runs"] == ["02_old.ipynb"]
    assert "Not from this run" in (tmp_path / "out" / "summary.md").read_text()


def test_an_output_folder_that_cannot_be_written_is_refused_before_any_kernel_starts(tmp_path, capsys):
    from lib.workbook.cli import main

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["run", "1", "--output", str(blocker / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the output folder") and str(blocker / "out") in err
    assert "Running" not in err


def test_update_sources_writes_no_temporary_notebook_where_pytest_would_collect_it(tmp_path, monkeypatch):
    source = write_notebook(tmp_path / "01_x.ipynb", "n: int = 1  # a number", ["print(n)"])
    run = workbook.execute(source, tmp_path / "out" / source.name, {})
    seen = []
    original = workbook.tempfile.mkstemp

    def spy(*args, **kwargs):
        handle, name = original(*args, **kwargs)
        seen.append(Path(name).name)
        return handle, name

    monkeypatch.setattr(workbook.tempfile, "mkstemp", spy)
    workbook.update_source(run)
    assert seen and all(name.startswith(".") and not name.endswith(".ipynb") for name in seen)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["01_x.ipynb", "out"]


def test_a_notebook_the_runner_will_not_run_is_named_in_a_warning(tmp_path, capsys):
    from lib.workbook.cli import main

    write_notebook(tmp_path / "01_ok.ipynb", "n: int = 1  # a number", ["print(n)"])
    write_notebook(tmp_path / "02 with space.ipynb", "n: int = 1  # a number", ["print(n)"])
    assert main(["run", "--list", "--notebook-dir", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "warning: 02 with space.ipynb is not run" in captured.err
    assert "01_ok.ipynb" in captured.out and "02 with space" not in captured.out


def test_stored_outputs_join_the_chunks_one_print_stream_was_flushed_in():
    nb = new_notebook(cells=[new_code_cell("print(1)")])
    nb.cells[0].outputs = [new_output("stream", name="stdout", text="a\n"),
                           new_output("stream", name="stdout", text="b\n"),
                           new_output("stream", name="stderr", text="warn\n"),
                           new_output("stream", name="stdout", text="c\n")]
    clean = workbook.strip_run_metadata(nb)
    assert [(o.name, o.text) for o in clean.cells[0].outputs] == [("stdout", "a\nb\n"), ("stderr", "warn\n"),
                                                                   ("stdout", "c\n")]


def test_a_second_run_into_a_busy_folder_is_refused_before_any_kernel_starts(tiny_workbook, tmp_path, capsys):
    out = tmp_path / "build"
    with processes.output_lock(out):  # a run in progress
        code = main(["run", "--notebook-dir", str(tiny_workbook), "--output", str(out)])
    assert code == 2
    assert f"error: another run is writing into {out}/" in capsys.readouterr().err
    assert list(out.iterdir()) == []
    with processes.output_lock(out):  # free again once the holder is done
        pass


def test_no_command_lists_the_commands_with_examples(capsys):
    assert main([]) == 2
    err = capsys.readouterr().err
    assert all(name in err for name in ("diagnose", "run", "mojo", "examples:", "python -m lib run --list"))
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "examples:" in capsys.readouterr().out


def test_the_playground_has_a_word_of_its_own_and_the_report_a_colour_for_every_word():
    assert verdict.parse_verdict("text\nVerdict: OBSERVED - what the starting state shows\n").word == "OBSERVED"
    assert set(report._WORD_COLORS) == set(verdict.WORDS)
    with pytest.raises(ValueError, match="word must be one of"):
        verdict.Verdict("SHOWN", "not a word")


def test_without_a_checkout_the_runner_looks_in_the_current_folder_and_says_what_to_do(tmp_path, monkeypatch,
                                                                                     capsys):
    # A `pip install .` (not editable) has no notebooks beside the package.
    monkeypatch.setattr(workbook, "NOTEBOOK_DIR", tmp_path / "site-packages" / "notebooks")
    monkeypatch.chdir(tmp_path)
    assert workbook.notebook_folder() == tmp_path / "notebooks"
    assert main(["run", "--list"]) == 2
    assert "run from a checkout of the workbook (pip install -e . there) or pass --notebook-dir" in \
        capsys.readouterr().err


def test_the_default_output_is_not_setuptools_build_folder():
    assert build_parser().parse_args(["run"]).output == workbook.DEFAULT_OUTPUT
    assert workbook.DEFAULT_OUTPUT.parts[0] != "build"


def test_decide_takes_the_first_rule_that_holds_and_formats_only_its_reason():
    never = lambda: [][0]  # noqa: E731 - a reason that would fail if it were formatted
    found = verdict.decide((False, "CONFIRMED", never), (True, "REFUTED", lambda: "it passes"), (True, "LATENT", never))
    assert str(found) == "Verdict: REFUTED - it passes"
    with pytest.raises(ValueError, match="no rule's condition holds"):
        verdict.decide((False, "REFUTED", "x"))


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores to run two notebooks at once")
def test_by_default_notebooks_run_one_per_core_at_once(tmp_path):
    # Each notebook waits for the other's file: they can only both finish if they run at the same time.
    meeting = tmp_path / "meeting"
    meeting.mkdir()
    body = ("import pathlib, time\n"
            f"here = pathlib.Path({str(meeting)!r})\n"
            "(here / me).touch()\n"
            "deadline = time.monotonic() + 60\n"
            "while not (here / other).exists() and time.monotonic() < deadline:\n"
            "    time.sleep(0.05)\n"
            "assert (here / other).exists(), 'the other notebook never ran alongside this one'")
    books = tmp_path / "notebooks"
    books.mkdir()
    _notebook(books / "01_a.ipynb", "me: str = 'a'\nother: str = 'b'", body)
    _notebook(books / "02_b.ipynb", "me: str = 'b'\nother: str = 'a'", body)
    assert main(["run", "--notebook-dir", str(books), "--output", str(tmp_path / "out")]) == 0
    commands = next(a for a in build_parser()._actions if a.dest == "command")
    assert "default: one per core" in commands.choices["run"].format_help()


def test_a_run_replaces_everything_the_previous_run_wrote_and_nothing_else(tiny_workbook, tmp_path):
    out = tmp_path / "out"
    assert main(["run", "--notebook-dir", str(tiny_workbook), "--output", str(out), "--html", "--jobs", "2"]) == 0
    assert {"02_second.ipynb", "02_second.html", "index.html"} <= {p.name for p in out.iterdir()}
    (out / "notes.txt").write_text("mine")  # not the runner's: kept
    (out / "05_mine.html").write_text("mine too")
    assert main(["run", "1", "--notebook-dir", str(tiny_workbook), "--output", str(out), "--html",
                 "-p", "seed=7"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["01_first.html", "01_first.ipynb", "05_mine.html", "index.html",
                                                      "notes.txt", "summary.json", "summary.md"]
    index = (out / "index.html").read_text()
    assert "Parameters: seed=7" in index and "02_second" not in index
    record = json.loads((out / "summary.json").read_text())
    assert record["files"] == ["01_first.html", "01_first.ipynb", "index.html", "summary.json", "summary.md"]
    assert "seed=7" in (out / "summary.md").read_text()


def test_a_stopped_run_leaves_the_earlier_runs_output_as_it_was(tiny_workbook, tmp_path, monkeypatch, capsys):
    import signal

    from lib.workbook import execution, staging

    out = tmp_path / "out"
    out.mkdir()
    earlier = {"01_first.ipynb": "{}", "index.html": "earlier index", "summary.md": "earlier",
               "summary.json": json.dumps({"notebooks": [{"file": "01_first.ipynb"}]})}
    for name, text in earlier.items():
        (out / name).write_text(text)

    def stopped(selected, staged, parameters, jobs):
        (staged / "01_first.ipynb").write_text("half a run")
        return [], signal.SIGINT

    monkeypatch.setattr(execution, "execute_all", stopped)
    assert main(["run", "--notebook-dir", str(tiny_workbook), "--output", str(out), "--html"]) == 130
    assert {p.name: p.read_text() for p in out.iterdir()} == earlier  # and no staging folder
    assert "left as it was" in capsys.readouterr().err
    # a summary from before the list of files was kept still says which files were the runner's
    assert staging.earlier_files(out) == ["01_first.ipynb", "index.html", "summary.json", "summary.md"]
