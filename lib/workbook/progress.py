"""Progress of the notebooks being run: which cell each is in, printed while it runs.

A worker executes its notebook with papermill's own engine, wrapped so that
each code cell, as it starts, writes `K N STARTED` (the cell's place among the
source's code cells, their number, the notebook's start as a Unix time) to a
small hidden file beside the executed copy. The runner's main process reads
those files every second (`Progress.poll`), whatever the number of workers,
and prints

    started 06_h4_numerical_precision.ipynb (41 code cells)
    06 cell 14/41, 95 s

a line when a notebook starts, and for a notebook running longer than
QUIET seconds a line when its cell has changed (at most every EVERY seconds)
or, in a long cell, every HEARTBEAT seconds, so that a short run prints
nothing but its results and a long one is never silent for minutes.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

QUIET = 10.0  # seconds a notebook runs before its cells are printed
EVERY = 5.0  # at most one line per notebook this often
HEARTBEAT = 30.0  # a line this often even when the cell has not changed
ENGINE = "workbook-progress"
SUFFIX = ".progress"


def progress_file(executed: Path) -> Path:
    """Where the worker writing `executed` reports its cell: hidden, so no report or swap takes it."""
    return executed.with_name(f".{executed.stem}{SUFFIX}")


def write_progress(path: Path, cell: int, cells: int, started: float) -> None:
    """Replace `path` with 'cell cells started' in one step, so that a reader never sees half a line."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(f"{cell} {cells} {started:.3f}\n", encoding="ascii")
    os.replace(temporary, path)


def read_progress(path: Path) -> tuple[int, int, float] | None:
    try:
        cell, cells, started = path.read_text(encoding="ascii").split()
        return int(cell), int(cells), float(started)
    except (OSError, ValueError):  # not there yet, or gone
        return None


def _engine_class():
    from papermill.engines import NBClientEngine

    class ReportingEngine(NBClientEngine):
        """papermill's engine, writing each code cell's number to a progress file as it starts."""

        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, progress_file=None, **kwargs):
            if progress_file is not None:
                _report_cells(nb_man, Path(progress_file))
            return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)

    return ReportingEngine


def _report_cells(nb_man, path: Path) -> None:
    # papermill counts its injected-parameters cell; the source's code cells are what a reader sees.
    code = [k for k, cell in enumerate(nb_man.nb.cells) if cell.cell_type == "code"
            and "injected-parameters" not in cell.metadata.get("tags", [])]
    started = time.time()
    with contextlib.suppress(OSError):  # progress is a courtesy: never fail a notebook for it
        write_progress(path, 0, len(code), started)
    cell_start = nb_man.cell_start

    def reporting_start(cell, cell_index=None, **kwargs):
        if cell_index in code:
            with contextlib.suppress(OSError):
                write_progress(path, code.index(cell_index) + 1, len(code), started)
        return cell_start(cell, cell_index, **kwargs)

    nb_man.cell_start = reporting_start


def progress_engine(progress: Path | None) -> dict:
    """Keywords for papermill.execute_notebook: the reporting engine when `progress` is a file, else none."""
    if progress is None:
        return {}
    from papermill.engines import papermill_engines

    if ENGINE not in papermill_engines._engines:
        papermill_engines.register(ENGINE, _engine_class())
    # absolute: papermill runs the notebook in the source's folder
    return {"engine_name": ENGINE, "progress_file": str(progress.resolve())}


class Progress:
    """What to print about the notebooks running into `folder` (see the module docstring)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.seen: dict[str, tuple[int, float]] = {}  # notebook stem -> (cell last printed, when)
        self.done: set[str] = set()

    def finished(self, executed: Path) -> None:
        self.done.add(executed.stem)

    def poll(self, now: float | None = None) -> list[str]:
        now = time.time() if now is None else now
        lines = []
        for path in sorted(self.folder.glob(f".*{SUFFIX}")):
            stem = path.name[1:-len(SUFFIX)]
            state = read_progress(path)
            if stem in self.done or state is None:
                continue
            cell, cells, started = state
            if stem not in self.seen:
                self.seen[stem] = (cell, now)
                lines.append(f"  started {stem}.ipynb ({cells} code cells)")
                continue
            printed, when = self.seen[stem]
            changed = cell != printed and now - when >= EVERY
            if now - started >= QUIET and (changed or now - when >= HEARTBEAT):
                self.seen[stem] = (cell, now)
                lines.append(f"  {stem[:2]} cell {cell}/{cells}, {now - started:.0f} s")
        return lines
