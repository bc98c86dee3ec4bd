"""The recorded runs of `python -m lib upstream` (mojo/upstream_runs.json), read for notebook 15.

Each run is the JSON document `python -m lib upstream PATH --json FILE` writes for one
commit of the original library: per gradient test, the worst error/tolerance under
the fixed checker at the test's original tolerance ("ours"), the library's own checker
at the tolerance its call site has at that commit ("upstream_here") and at the original
one ("upstream_original"), and the failure-era algorithm ("era"), plus the mutation
probes. This module only reads them; the numbers are the runs' own.
"""

from __future__ import annotations

import json
from pathlib import Path

RECORDED = Path(__file__).resolve().parents[2] / "mojo" / "upstream_runs.json"

#: The checkers of a run, by key, and how a table names them.
CHECKERS = {"era": "failure-era checker", "upstream_here": "the library's checker, its tolerance then",
            "upstream_original": "the library's checker, original tolerance", "ours": "fixed checker"}


def load(path: Path = RECORDED) -> dict:
    """The recorded document: {"description": str, "runs": [run, ...]}, one run per commit."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def commits(document: dict) -> list[str]:
    """The recorded commits, shortened to 8 characters, in the order they were recorded."""
    return [run["commit"][:8] for run in document["runs"]]


def run_for(document: dict, commit: str) -> dict | None:
    """The run whose commit id starts with `commit` (at least 7 characters), or None."""
    commit = commit.strip().lower()
    if len(commit) < 7:
        return None
    found = [run for run in document["runs"] if (run.get("commit") or "").lower().startswith(commit)]
    return found[0] if len(found) == 1 else None


def short_name(record: dict) -> str:
    """A test's name without its `test_` prefix and `_backward`/`_gradient` suffixes."""
    name = record["test"].removeprefix("test_")
    for suffix in ("_gradient", "_backward", "_grad"):
        name = name.removesuffix(suffix)
    return name


def ratio(record: dict, checker: str) -> float:
    """The worst error/tolerance of `checker` on this test (NaN when it measured nothing)."""
    return float(record[checker].get("ratio", float("nan")))


def passed(record: dict, checker: str) -> bool:
    return bool(record[checker]["passed"])


def loosened_at_call_site(record: dict) -> bool:
    """Whether the test's call at this commit passes a looser rtol or atol than it was written with."""
    original, here = record.get("original_tolerance"), record.get("upstream_tolerance")
    return bool(original and here) and (here[0] > original[0] or here[1] > original[1])


def loosened_by_checker(record: dict) -> bool:
    """Whether the library's checker itself runs looser than the call asks: its silent raise of
    atol (to at least 1e-4 for float32 once it picks its own step)."""
    here, effective = record.get("upstream_tolerance"), record.get("upstream_effective_atol")
    return bool(here) and effective is not None and effective > here[1]


def loosened(record: dict) -> bool:
    """Whether the library ran this test looser than written, at the call site or in its checker."""
    return loosened_at_call_site(record) or loosened_by_checker(record)


def labels(tests: list[dict]) -> list[str]:
    """short_name of each test, with its file's name added where two tests share a name."""
    names = [short_name(t) for t in tests]
    return [name if names.count(name) == 1 else
            f"{name} ({t['file'].rsplit('/', 1)[-1].removeprefix('test_').removesuffix('.mojo')})"
            for name, t in zip(names, tests, strict=True)]


def remeasured(record: dict) -> list[dict]:
    """The elements the fixed checker measured again at smaller steps: index, verdict, step, first_ratio."""
    return list(record["ours"].get("remeasured") or [])


def later_runs(document: dict, run: dict) -> list[dict]:
    """The runs recorded after the one of `run`'s commit (the document keeps them in commit order);
    none when that commit was not recorded."""
    ids = [r.get("commit") for r in document["runs"]]
    if run.get("commit") not in ids:
        return []
    return document["runs"][ids.index(run["commit"]) + 1:]


def record_in(run: dict, record: dict) -> dict | None:
    """The same test (file and name) in another run, or None when that run does not have it."""
    for other in run["tests"]:
        if other["test"] == record["test"] and other["file"] == record["file"]:
            return other
    return None


def restoration_rows(run: dict) -> list[str]:
    """The proposed fix's table (docs/proposed_fix.md), one markdown row per test the library runs looser
    than written: test, file, the tolerance written, the one used at this commit, and the fixed checker's
    worst error/tolerance at the written one with what that allows."""
    rows = []
    for record, label in zip(run["tests"], labels(run["tests"]), strict=True):
        if not loosened(record):
            continue
        written, used = record["original_tolerance"], record["upstream_tolerance"]
        effective = record.get("upstream_effective_atol")
        used_text = f"{used[0]:g} / {used[1]:g}" + (f" (atol {effective:g} in the checker)"
                                                    if effective is not None and effective > used[1] else "")
        outcome = ("restore the written tolerance" if passed(record, "ours")
                   else "keep looking: the fixed checker fails it")
        rows.append(f"| {label} | `{record['file'].rsplit('/', 1)[-1]}` | {written[0]:g} / {written[1]:g} | "
                    f"{used_text} | {ratio(record, 'ours'):.3g} | {outcome} |")
    return rows
