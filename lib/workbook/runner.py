"""Run the workbook headless: every numbered notebook, in order, with papermill.

Executed copies go to an output folder (default `output/`), never over the
source notebooks. `-p NAME VALUE` reaches every selected notebook that
declares NAME in its `parameters` cell; a NAME no selected notebook declares
is refused (papermill itself would only log a warning and run the default).
The summary table reads each verdict back from the executed notebook's cell
tagged `verdict`.

`update_sources=True` re-executes the sources with their defaults and writes
them back with clean metadata (no papermill timestamps or durations, execution
counts kept), only after a successful run, by atomic replacement.
"""

from __future__ import annotations

import copy
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from lib.workbook.facts import FACTS_FILE, read_facts
from lib.workbook.parameters import (  # noqa: F401  (the runner's interface: cli and tests use them here)
    PARAMETER_RULES,
    WorkbookError,
    declared_parameters,
    resolve_parameters,
    split_parameter,
)
from lib.workbook.progress import progress_engine
from lib.workbook.verdict import parse_verdict

#: The checkout's notebooks. An install that is not editable (`pip install .`) has no notebooks
#: beside the package; then the runner looks in the current folder (see discover).
NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
#: Not `build/`: setuptools builds the package there (build/lib, build/bdist.*).
DEFAULT_OUTPUT = Path("output")
NOTEBOOK_NAME = re.compile(r"^(\d{2})_[\w-]+\.ipynb$")
KERNEL_NAME = "python3"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
#: The kernel's own log says nothing about a headless run: ipykernel 7 warns on every start
#: that it "is running over TCP without encryption" (the runner's kernels listen on this
#: machine's loopback address only, for this process alone), and jupyter_client interrupts
#: every kernel it shuts down, which now and then logs "KeyboardInterrupt caught in kernel"
#: at error level. A failing cell or a dead kernel is reported by the run, not by this log.
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=CRITICAL"]


def notebook_folder(given: Path | None = None) -> Path:
    """`given`, else the checkout's notebooks/, else ./notebooks (an install that is not editable)."""
    if given is not None:
        return given
    return NOTEBOOK_DIR if NOTEBOOK_DIR.is_dir() else Path.cwd() / "notebooks"


def discover(notebook_dir: Path = NOTEBOOK_DIR) -> list[Path]:
    """The numbered notebooks (NN_name.ipynb) in reading order."""
    if not notebook_dir.is_dir():
        raise WorkbookError(f"notebook folder not found: {notebook_dir}; run from a checkout of the workbook "
                            "(pip install -e . there) or pass --notebook-dir")
    return sorted(p for p in notebook_dir.iterdir() if NOTEBOOK_NAME.match(p.name))


def skipped(notebook_dir: Path = NOTEBOOK_DIR) -> list[Path]:
    """Notebooks in the folder the runner will not run: their names are not NN_name.ipynb
    (a space, a missing number), so a user can be told instead of finding them missing."""
    return sorted(p for p in notebook_dir.glob("*.ipynb")
                  if not NOTEBOOK_NAME.match(p.name) and not p.name.startswith("."))


def select(notebooks: list[Path], wanted: list[str]) -> list[Path]:
    """Pick notebooks by number: '3', '03', or a range '3-5'. No selection means all."""
    if not wanted:
        return notebooks
    by_number = {int(NOTEBOOK_NAME.match(p.name).group(1)): p for p in notebooks}
    chosen: list[int] = []
    for item in wanted:
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", item.strip())
        if not match:
            raise WorkbookError(f"notebook selection must be a number or a range like 3-5; got {item!r}")
        low, high = int(match.group(1)), int(match.group(2) or match.group(1))
        if low > high:
            raise WorkbookError(f"notebook range {item!r} runs backwards; write {high}-{low}")
        numbers = [n for n in range(low, high + 1) if n in by_number]
        if not numbers:
            raise WorkbookError(f"no notebook numbered {item}; available: {', '.join(map(str, by_number))}")
        chosen.extend(n for n in numbers if n not in chosen)
    return [by_number[n] for n in sorted(chosen)]


@dataclass
class NotebookRun:
    """The outcome of one executed notebook."""

    source: Path
    output: Path
    status: str  # "ok" or "failed"
    seconds: float
    verdict: str = "-"
    error: str = ""
    #: where a failed notebook stopped, "cell K ('first line')" (K counted in the source, as in `error`)
    cell: str = ""
    #: whether the notebook has a cell tagged `verdict` (a teaching notebook has none)
    verdict_cell: bool = False
    #: the facts it recorded (lib.workbook.facts), {} when it recorded none
    facts: dict = field(default_factory=dict)

    @property
    def outcome(self) -> str:
        """The verdict, or what stands in for it: 'crashed in cell K (...)', or '-' for a teaching notebook."""
        if self.verdict != "-":
            return self.verdict
        if self.status != "ok":
            return f"crashed in {self.cell}" if self.cell else "crashed before any cell ran"
        return "no verdict (its verdict cell printed none)" if self.verdict_cell else "-"


def has_verdict_cell(notebook) -> bool:
    return any("verdict" in cell.get("metadata", {}).get("tags", []) for cell in notebook.cells)


def read_verdict(notebook) -> str:
    """The `Verdict: WORD - reason` printed by the cell tagged `verdict`, or '-'."""
    for cell in notebook.cells:
        if cell.cell_type != "code" or "verdict" not in cell.get("metadata", {}).get("tags", []):
            continue
        text = "".join(out.get("text", "") for out in cell.get("outputs", []) if out.get("output_type") == "stream")
        found = parse_verdict(text)
        if found:
            return f"{found.word} - {found.reason}"
    return "-"


def strip_run_metadata(notebook):
    """Remove what changes on every run (papermill timings, execution timestamps)."""
    notebook = copy.deepcopy(notebook)
    notebook.metadata.pop("papermill", None)
    # Widget state carries fresh model ids on every run; a reopened notebook
    # rebuilds its widgets by running the cell again.
    notebook.metadata.pop("widgets", None)
    notebook.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python",
                                       "name": KERNEL_NAME}
    for cell in notebook.cells:
        if "outputs" in cell:
            cell["outputs"] = merged_streams(cell["outputs"])
        for output in cell.get("outputs", []):
            # A widget view names a model by a fresh random id on every run, and
            # the model's state is not stored: keep only its plain-text form.
            if WIDGET_VIEW in output.get("data", {}):
                output["data"] = {k: v for k, v in output["data"].items() if k != WIDGET_VIEW}
        for key in ("papermill", "execution", "ExecuteTime"):
            cell.metadata.pop(key, None)
        tags = [t for t in cell.metadata.get("tags", []) if t != "injected-parameters"]
        if "tags" in cell.metadata:
            cell.metadata["tags"] = tags
    return notebook


def merged_streams(outputs: list) -> list:
    """Consecutive stdout (or stderr) outputs joined into one.

    The kernel flushes a cell's printing in chunks whose boundaries vary from
    run to run; joined, a refresh that prints the same text stores the same JSON.
    """
    merged: list = []
    for output in outputs:
        previous = merged[-1] if merged else None
        if (output.get("output_type") == "stream" and previous is not None
                and previous.get("output_type") == "stream" and previous.get("name") == output.get("name")):
            previous["text"] = "".join(previous["text"]) + "".join(output["text"])
        else:
            merged.append(output)
    return merged


def facts_file(executed: Path) -> Path:
    """Where the notebook executed into `executed` records its facts: beside it, listed and kept with it."""
    return executed.with_name(f"{executed.stem}.facts.json")


def _kernel_environment(facts: Path) -> str | None:
    """Prepare this process's environment, which the kernel it starts inherits; returns the earlier
    WORKBOOK_FACTS (None: unset), for `_restore_facts_file`."""
    # A backend forced for headless runs (MPLBACKEND=Agg) would make the kernel
    # drop every figure, so executed notebooks would lack their plots.
    os.environ.pop("MPLBACKEND", None)
    earlier = os.environ.get(FACTS_FILE)
    facts.unlink(missing_ok=True)  # record_facts adds to what the file holds: start from nothing
    os.environ[FACTS_FILE] = str(facts.resolve())  # absolute: the kernel runs in the source's folder
    return earlier


def _restore_facts_file(earlier: str | None) -> None:
    if earlier is None:
        os.environ.pop(FACTS_FILE, None)
    else:
        os.environ[FACTS_FILE] = earlier


def _recorded_facts(path: Path) -> tuple[dict, str]:
    """(facts, '') from the notebook's facts file, or ({}, why) when the file cannot be read."""
    try:
        found = read_facts(path)
    except (OSError, ValueError) as error:
        return {}, f"its facts file {path.name} cannot be read ({error})"
    return (found, "") if isinstance(found, dict) else ({}, f"its facts file {path.name} holds no facts")


def _source_cell(source: Path, failing_source: str, fallback: int) -> int:
    """The failing cell's index in the source notebook: papermill counts its own
    injected-parameters cell, which the source does not have."""
    import nbformat

    cells = nbformat.read(str(source), as_version=4).cells
    return next((k for k, cell in enumerate(cells) if cell.source == failing_source), fallback)


def _last_started_cell(executed: Path, source: Path) -> str:
    """'cell K ('first line')' for the last cell papermill started in `executed`: after a dead kernel,
    the one that was running; '' when none started or the file cannot be read."""
    import nbformat

    try:
        cells = nbformat.read(str(executed), as_version=4).cells
    except Exception:  # no partial output to read: name no cell
        return ""
    started = [(k, c) for k, c in enumerate(cells) if (c.metadata.get("papermill") or {}).get("start_time")]
    if not started:
        return ""
    index, cell = started[-1]
    return f"cell {_source_cell(source, cell.source, index)} ({_first_line(cell.source)!r})"


def _first_line(text: str) -> str:
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line if len(line) <= 60 else line[:57] + "..."


def execute(source: Path, output: Path, parameters: dict, progress: Path | None = None) -> NotebookRun:
    """Execute one notebook into `output` in the source's folder.

    Never raises for what happens inside the notebook: a cell error, a dead
    kernel or an unreadable file all come back as status "failed" with a
    message naming the notebook (and the cell, when there is one).

    papermill writes its output as the cells run; that goes to a hidden
    `.NN_name.partial.ipynb` beside `output` and replaces `output` only once
    papermill has finished (an executed notebook that failed in a cell is
    complete too, with its error). A run stopped half-way leaves the previous
    `output` as it was. With `progress`, the cell being run is written there
    as each starts (lib.workbook.progress), for the runner to print.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.stem}.partial.ipynb")  # papermill wants the suffix
    facts = facts_file(output)
    earlier = _kernel_environment(facts)
    start = time.perf_counter()
    status, error, cell = "ok", "", ""
    try:
        papermill.execute_notebook(str(source), str(partial), parameters=parameters, cwd=str(source.parent),
                                   kernel_name=KERNEL_NAME, progress_bar=False, log_output=False,
                                   extra_arguments=KERNEL_ARGUMENTS, **progress_engine(progress))
    except PapermillExecutionError as failure:
        status = "failed"
        cell = f"cell {_source_cell(source, failure.source, failure.cell_index)} ({_first_line(failure.source)!r})"
        error = f"{source.name}: {cell} raised {failure.ename}: {failure.evalue}"
    except Exception as failure:  # a dead kernel, a timeout, a file that is not a notebook
        status = "failed"
        cell = _last_started_cell(partial, source) if partial.exists() else ""
        error = f"{source.name}:{' ' + cell if cell else ''} {type(failure).__name__}: {failure}"
    finally:
        _restore_facts_file(earlier)
    if progress is not None:
        progress.unlink(missing_ok=True)  # finished: nothing more to report while it waits its turn
    if partial.exists():
        os.replace(partial, output)
    run = NotebookRun(source, output, status, time.perf_counter() - start, "-", error, cell)
    _read_back(run, facts)
    return run


def _read_back(run: NotebookRun, facts: Path) -> None:
    """The verdict and the facts of an executed notebook, into `run`; unreadable facts fail it."""
    import nbformat

    if run.status == "ok" or run.output.exists():
        try:
            executed = nbformat.read(str(run.output), as_version=4)
            run.verdict, run.verdict_cell = read_verdict(executed), has_verdict_cell(executed)
        except Exception:  # a half-written output after a crash has no verdict to read
            pass
    run.facts, problem = _recorded_facts(facts)
    if problem:
        run.status = "failed"
        run.error = "; ".join(filter(None, [run.error, f"{run.source.name}: {problem}"]))


def update_source(run: NotebookRun) -> None:
    """Write an executed notebook back over its source with clean metadata (atomic)."""
    import nbformat

    clean = strip_run_metadata(nbformat.read(str(run.output), as_version=4))
    # Beside the source, so that the replace is atomic; hidden and not *.ipynb, so that a
    # crash before the replace leaves nothing pytest --nbval or the runner would collect.
    handle, temporary = tempfile.mkstemp(prefix=f".{run.source.name}.", suffix=".partial", dir=run.source.parent)
    os.close(handle)
    try:
        nbformat.write(clean, temporary)
        os.chmod(temporary, os.stat(run.source).st_mode & 0o7777)  # mkstemp makes it 0600
        os.replace(temporary, run.source)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def require_writable(folder: Path, what: str) -> None:
    """Create `folder` if needed and prove a file can be written there, or WorkbookError naming it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=".write-test.", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise WorkbookError(f"{what} {folder} is not writable ({error.strerror or error})") from None


def check_output_folder(output_dir: Path, notebook_dir: Path, *, update_sources: bool = False) -> None:
    """Refuse an output folder that is a file, that is or lies inside the notebook folder
    (pytest --nbval would then collect the executed copies as if they were sources), or
    that cannot be written; with update_sources, also a notebook folder that cannot be
    written. Checked before any kernel starts."""
    out, notebooks = output_dir.resolve(), notebook_dir.resolve()
    if out.exists() and not out.is_dir():
        raise WorkbookError(f"--output must be a folder; {output_dir} is a file")
    if out == notebooks or notebooks in out.parents:
        raise WorkbookError(
            f"--output must not be the notebook folder {notebook_dir} or inside it (executed copies never "
            "overwrite sources; "
            "use --update-sources to refresh stored outputs)")
    require_writable(output_dir, "the output folder")
    if update_sources:
        require_writable(notebook_dir, "the notebook folder (--update-sources writes there)")
