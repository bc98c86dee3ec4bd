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

from lib.workbook import findings
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


def summary(runs, parameters: dict, total: float, earlier: list[str] = (), stopped: str | None = None) -> dict:
    """The run as a JSON-ready dict (see the module docstring).

    `earlier` names executed notebooks in the output folder that the runner did
    not write (kept, and listed so that nobody takes them for this run's);
    `stopped` names the signal that stopped the run half-way, if one did.
    """
    source_dir = runs[0].source.parent if runs else Path.cwd()
    notebooks = [{**findings.entry(run, _title(run)),
                  "parameters": {k: v for k, v in parameters.get(run.source, {}).items()}} for run in runs]
    return {
        "finished": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "seconds": round(total, 2),
        "stopped_by": stopped,
        "versions": {"python": platform.python_version(), "numpy": _version("numpy"),
                     "ipykernel": _version("ipykernel"), "papermill": _version("papermill"),
                     PROJECT: _version(PROJECT)},
        "git_revision": _git_revision(source_dir),
        "notebooks": notebooks,
        "found": [{"label": label, "text": text, "notebook": source}
                  for label, text, source in findings.answer(notebooks)],
        "disagreements": [{"fact": name, "notebooks": [a, b], "values": [x, y],
                           "text": f"{name}: {a} measured {x!r}, {b} measured {y!r}"}
                          for name, a, x, b, y in findings.fact_conflicts(notebooks)],
        "contradictions": [{"notebook": notebook, "text": text}
                           for notebook, text in findings.contradictions(notebooks)],
        "earlier_runs": sorted(earlier),
    }


def _facts_markdown(record: dict) -> list[str]:
    """'Facts that disagree' (a failure of the run) and the facts recorded, compactly; [] when none."""
    lines = []
    if record["disagreements"] or record["contradictions"]:
        lines += ["## Facts that disagree", ""]
        lines += [f"- {d['text']}" for d in record["disagreements"]]
        lines += [f"- {c['notebook']}: {c['text']}" for c in record["contradictions"]]
        lines.append("")
    measured = findings.recorded_text(record["notebooks"])
    if measured:
        lines += ["## Facts recorded", "", "Each fact, its value and the notebooks that measured it:", ""]
        lines += [f"- {line}" for line in measured]
        lines.append("")
    return lines


def _markdown(record: dict) -> str:
    lines = [f"# Workbook run, {record['finished']}", "",
             f"{len(record['notebooks'])} notebooks in {record['seconds']} s; git revision "
             f"{record['git_revision']}; " + ", ".join(f"{k} {v}" for k, v in record["versions"].items()), ""]
    if record.get("stopped_by"):
        lines += [f"Stopped by {record['stopped_by']}: only the notebooks below ran.", ""]
    if record["found"]:
        lines += ["## What this run found", ""]
        lines += [f"- **{f['label']}**: {f['text']}" + (f" ({f['notebook']})" if f["notebook"] else "")
                  for f in record["found"]]
        lines.append("")
    lines += _facts_markdown(record)
    lines += ["| notebook | status | time | parameters | verdict |", "| --- | --- | --- | --- | --- |"]
    for nb in record["notebooks"]:
        given = ", ".join(f"{k}={v!r}" for k, v in nb["parameters"].items()) or "defaults"
        verdict = nb["verdict"] if nb["verdict"] != "-" else (
            "(no verdict)" if nb["status"] == "ok" else
            f"crashed in {nb['crashed_in']}:" if nb["crashed_in"] else "crashed before any cell ran:")
        text = verdict + (f" {nb['error']}" if nb["error"] else "")
        lines.append(f"| {nb['title']} | {nb['status']} | {nb['seconds']:.1f} s | {given} | "
                     f"{text.replace('|', '/')} |")
    if record["earlier_runs"]:
        lines += ["", "Not from this run (not written by the runner, left as they were): "
                  + ", ".join(record["earlier_runs"])]
    return "\n".join(lines) + "\n"


def write_summary(runs, parameters: dict, output: Path, total: float, earlier: list[str] = (),
                  stopped: str | None = None) -> tuple[Path, Path]:
    """Write summary.json and summary.md into `output`; return their paths.

    summary.json lists every file of `output` the run wrote (`files`: the
    executed notebooks, their pages, index.html, the summary files), so that
    the next run removes exactly those.
    """
    record = summary(runs, parameters, total, earlier, stopped)
    json_path, md_path = output / "summary.json", output / "summary.md"
    record["files"] = sorted({p.name for p in output.iterdir() if p.is_file() and not p.name.startswith(".")}
                             | {json_path.name, md_path.name})
    json_path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    md_path.write_text(_markdown(record), encoding="utf-8")
    return json_path, md_path
