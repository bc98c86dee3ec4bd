"""One run's files in the output folder, and only that run's: staged, then swapped in.

A run writes its executed notebooks, pages, index.html and summary.* into a
hidden folder inside the output folder (STAGING). When it is done, `swap`
removes the files the previous run wrote (the names its summary.json lists,
nothing else: a file the runner did not write stays) and moves the new ones
in, with Ctrl-C and SIGTERM held back for those few milliseconds. A run
stopped before the swap leaves the earlier run's output as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
from pathlib import Path

STAGING = ".workbook-next-run"
SUMMARY_JSON = "summary.json"


def stage(output: Path) -> Path:
    """A fresh, empty staging folder in `output` (what a killed run left there is dropped)."""
    staging = output / STAGING
    discard(staging)
    staging.mkdir(parents=True)
    return staging


def discard(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)


def _plain_name(name) -> bool:
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\\" not in name


def earlier_files(output: Path) -> list[str]:
    """The files the previous run wrote into `output`, as its summary.json lists them.

    A summary from before the list was kept names its executed notebooks; their
    pages, index.html and the summary files are then taken to be the runner's too.
    """
    try:
        record = json.loads((output / SUMMARY_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(record, dict):
        return []
    names = record.get("files")
    if not isinstance(names, list):
        notebooks = [nb.get("file") for nb in record.get("notebooks", []) if isinstance(nb, dict)]
        names = [SUMMARY_JSON, "summary.md", "index.html"] + [
            n for nb in notebooks if _plain_name(nb) for n in (nb, str(Path(nb).with_suffix(".html")))]
    return sorted({n for n in names if _plain_name(n) and (output / n).is_file()})


def has_earlier_run(output: Path) -> bool:
    return (output / SUMMARY_JSON).is_file()


def staged_files(staging: Path) -> list[str]:
    """The finished files of the staged run (hidden ones are work in progress and are not moved)."""
    return sorted(p.name for p in staging.iterdir() if p.is_file() and not p.name.startswith("."))


@contextlib.contextmanager
def _signals_held():
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def swap(staging: Path, output: Path) -> list[str]:
    """Replace the previous run's files in `output` by the staged ones; returns the names moved in."""
    with _signals_held():
        new = staged_files(staging)
        for name in earlier_files(output):
            if name not in new:
                with contextlib.suppress(FileNotFoundError):
                    (output / name).unlink()
        for name in new:
            os.replace(staging / name, output / name)
        discard(staging)
    return new
