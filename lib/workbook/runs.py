"""One workbook run into an output folder: execute, record, swap in, print the table; and its exit code.

`python -m lib run` makes one such run; `python -m lib sweep` one per parameter
set. Each notebook records the facts it measured (lib.workbook.facts, through
the file the runner names); two notebooks that measured one fact differently
fail the run as a crashed notebook does (lib.workbook.findings.problems).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

from lib.workbook import execution, findings, report, staging, summary
from lib.workbook import runner as workbook


@dataclass
class Outcome:
    """What one run ended with: its exit code, its notebooks' runs, and the facts that disagree."""

    code: int
    runs: list
    problems: list[str]
    #: (fact, notebook, value, other notebook, other value), as lib.workbook.facts.conflicts
    conflicts: list
    #: (notebook, text), as lib.workbook.findings.contradictions
    contradictions: list


def entries(runs) -> list[dict]:
    """The runs as findings reads them (summary.json's notebook entries, titles aside)."""
    return [findings.entry(r, r.source.stem) for r in runs]


def summary_text(runs, total: float) -> str:
    name_width = max((len(r.source.stem) for r in runs), default=len("notebook"))
    lines = [f"{'notebook':<{name_width}}  {'status':<6}  {'time':>6}  verdict"]
    for r in runs:
        verdict = r.outcome if len(r.outcome) <= 100 else r.outcome[:97] + "..."
        lines.append(f"{r.source.stem:<{name_width}}  {r.status:<6}  {r.seconds:>5.1f}s  {verdict}")
    failed = sum(r.status != "ok" for r in runs)
    problems = findings.problems(entries(runs))
    lines.append(f"notebooks: {len(runs) - failed} ok, {failed} failed, {total:.1f} s"
                 + (f"; {len(problems)} fact(s) disagree" if problems else ""))
    measured = findings.recorded_text(entries(runs))
    if measured:
        lines += ["", "Facts recorded (value, notebooks):", *(f"  {line}" for line in measured)]
    found = findings.as_text(findings.answer(entries(runs)))
    if found:
        lines += ["", "What this run found:", *(f"  {line}" for line in found)]
    return "\n".join(lines)


def run_into(output: Path, selected, parameters: dict, pairs, args) -> Outcome:
    """Execute into a staging folder, write the summary (and report), swap it in, print the table.

    The earlier run's files stay in `output` until this run is complete (lib.workbook.staging);
    a run stopped half-way leaves them as they were, and only when there were none does it
    leave what it finished, with a summary saying where it stopped. `args` carries `jobs`,
    `html` and `update_sources`.
    """
    start = time.perf_counter()
    total = len(selected)
    print(f"Running {total} notebook(s) into {output}/ ...", flush=True)
    staged = staging.stage(output)
    runs, stopped = execution.execute_all(selected, staged, parameters, args.jobs)
    took = time.perf_counter() - start  # one number for the summary files, the report and the terminal
    if stopped and staging.has_earlier_run(output):
        staging.discard(staged)
        print(f"The earlier run's output in {output}/ is left as it was.", file=sys.stderr)
    else:
        _write_records(runs, staged, output, parameters, pairs, took, stopped, args)
    if args.update_sources:
        for run in runs:
            if run.status == "ok":
                workbook.update_source(run)
        print("Stored outputs refreshed in: " + ", ".join(r.source.name for r in runs if r.status == "ok"))
    print()
    print(summary_text(runs, took))
    return _outcome(runs, stopped, total)


def _outcome(runs, stopped, total: int) -> Outcome:
    """Say on stderr what failed (notebooks, facts) and how the run stopped; the exit code with the runs."""
    failed = [r for r in runs if r.status != "ok"]
    for run in failed:
        print(f"FAILED {run.error}", file=sys.stderr)
    found = entries(runs)
    problems = findings.problems(found)
    for line in problems:
        print(f"FACTS DISAGREE {line}", file=sys.stderr)
    code = 1 if failed or problems else 0
    if stopped:
        print(f"Stopped by {stopped.name} after {len(runs)} of {total} notebooks; the rest did not run.",
              file=sys.stderr)
        code = 128 + stopped.value
    return Outcome(code, runs, problems, findings.fact_conflicts(found), findings.contradictions(found))


def _write_records(runs, staged: Path, output: Path, parameters, pairs, took, stopped, args) -> None:
    """The report and the summary, written beside the staged notebooks, then all swapped into `output`."""
    if args.html:
        report.write_report(runs, staged, pairs, total=took)
    produced = {run.output.name for run in runs}
    leftover = set(staging.earlier_files(output))
    earlier = [p.name for p in output.glob("[0-9][0-9]_*.ipynb") if p.name not in produced | leftover]
    summary.write_summary(runs, parameters, staged, took, earlier, stopped.name if stopped else None)
    staging.swap(staged, output)
    for run in runs:
        run.output = output / run.output.name
    print(f"Summary: {output / 'summary.md'} and summary.json (full verdicts, parameters, facts, versions, "
          "git revision)")
    if args.html:
        print(f"HTML report: {output / report.INDEX_NAME}")
