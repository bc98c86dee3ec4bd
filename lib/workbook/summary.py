"""The record of one headless run: `summary.json` and `summary.md` beside the executed notebooks.

The terminal shows verdicts cut to a line; these files keep everything a
reader needs to trust or reproduce the run: per notebook its title, status,
time, the whole verdict and the parameters it was run with, and for the run
the versions of Python, numpy, ipykernel and this project, and the git
revision of the checkout (with a note when it had uncommitted changes).
"""

from __future__ import annotations

import datetime
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from lib.workbook.report import notebook_title

PROJECT = "dropout-gradcheck-workbook"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git_revision(folder: Path) -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=folder,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return f"{head} (with uncommitted changes)" if dirty else head


def _title(run) -> str:
    import nbformat

    try:
        return notebook_title(nbformat.read(str(run.output), as_version=4), run.source.stem)
    except Exception:  # a notebook that died before it was written has only its file name
        return run.source.stem


def summary(runs, parameters: dict, total: float, output: Path | None = None) -> dict:
    """The run as a JSON-ready dict (see the module docstring).

    `earlier_runs` lists executed notebooks in `output` that this run did not
    produce (a partial run such as `run 3-6` leaves the others as they were).
    """
    source_dir = runs[0].source.parent if runs else Path.cwd()
    produced = {run.output.name for run in runs}
    earlier = sorted(p.name for p in output.glob("[0-9][0-9]_*.ipynb") if p.name not in produced) if output else []
    return {
        "finished": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "seconds": round(total, 2),
        "versions": {"python": platform.python_version(), "numpy": _version("numpy"),
                     "ipykernel": _version("ipykernel"), "papermill": _version("papermill"),
                     PROJECT: _version(PROJECT)},
        "git_revision": _git_revision(source_dir),
        "notebooks": [{"file": run.output.name, "title": _title(run), "status": run.status,
                       "seconds": round(run.seconds, 2), "verdict": run.verdict, "error": run.error,
                       "parameters": {k: v for k, v in parameters.get(run.source, {}).items()}}
                      for run in runs],
        "earlier_runs": earlier,
    }


def _markdown(record: dict) -> str:
    lines = [f"# Workbook run, {record['finished']}", "",
             f"{len(record['notebooks'])} notebooks in {record['seconds']} s; git revision "
             f"{record['git_revision']}; " + ", ".join(f"{k} {v}" for k, v in record["versions"].items()), "",
             "| notebook | status | time | parameters | verdict |", "| --- | --- | --- | --- | --- |"]
    for nb in record["notebooks"]:
        given = ", ".join(f"{k}={v!r}" for k, v in nb["parameters"].items()) or "defaults"
        text = (nb["verdict"] if nb["verdict"] != "-" else "(no verdict)") + (f" {nb['error']}" if nb["error"] else "")
        lines.append(f"| {nb['title']} | {nb['status']} | {nb['seconds']:.1f} s | {given} | "
                     f"{text.replace('|', '/')} |")
    if record["earlier_runs"]:
        lines += ["", "Not from this run (left by an earlier one, with whatever parameters it had): "
                  + ", ".join(record["earlier_runs"])]
    return "\n".join(lines) + "\n"


def write_summary(runs, parameters: dict, output: Path, total: float) -> tuple[Path, Path]:
    """Write summary.json and summary.md into `output`; return their paths."""
    record = summary(runs, parameters, total, output)
    json_path, md_path = output / "summary.json", output / "summary.md"
    json_path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    md_path.write_text(_markdown(record), encoding="utf-8")
    return json_path, md_path
