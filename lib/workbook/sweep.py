"""`python -m lib sweep`: the workbook under many parameter sets, one workbook run each, in one table.

The sets are drawn at random from the ranges the notebooks declare
(lib.workbook.draws; the seed is printed, and `--seed S` draws the same sets
again) and named with `--set NAME=VALUE[,...]`. Every set is checked before
any kernel starts; then each runs as `python -m lib run` would, into a folder
of its own (set-01, set-02, ... in --output), and the table shows, per set and
notebook, `ok` (no verdict), the verdict word, `CRASH` or `FACTS` (a fact it
measured differently from another notebook, or its verdict contradicts its
facts). The exit code is 0 only when every set is clean.
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from lib.workbook import draws, execution, processes, ranges, runs
from lib.workbook import runner as workbook

DEFAULT_OUTPUT = workbook.DEFAULT_OUTPUT / "sweep"
#: Drawn sets when neither -n nor --set is given.
DEFAULT_COUNT = 3


@dataclass
class Row:
    """One parameter set and what its run found."""

    label: str  # "1" ... ; a named set's label ends in "*"
    pairs: list[tuple[str, str]]
    output: Path
    cells: dict[str, str] = field(default_factory=dict)
    crashed: bool = False
    disagreements: list[str] = field(default_factory=list)
    code: int | None = None

    @property
    def clean(self) -> bool:
        return self.code == 0 and not self.crashed and not self.disagreements


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "sweep", help="run the workbook under random and named parameter sets and tabulate the verdicts",
        description="Run the selected notebooks once per parameter set, each set as one workbook run into its "
                    "own folder, and print one row per set: per notebook ok, the verdict word, CRASH, or "
                    "FACTS (it measured a fact differently from another notebook). Exit code 0 only when "
                    "every set ran clean.",
        epilog="examples:\n"
               "  python -m lib sweep                            3 random sets, every notebook\n"
               "  python -m lib sweep 3-6 -n 5 --seed 7          5 sets drawn with seed 7, notebooks 03 to 06\n"
               "  python -m lib sweep 1 4 --set seed=2 --set p=0.9,dtype=float64   two named sets only",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", metavar="N",
                        help="notebook numbers or ranges (e.g. 3 6-8); default: all")
    parser.add_argument("-n", type=ranges.argument_type("[1, inf)", int), default=None, metavar="COUNT",
                        help=f"random sets to draw, at least 1 (default {DEFAULT_COUNT}, or none when --set "
                             "names sets)")
    parser.add_argument("--seed", type=ranges.argument_type("[0, 2**63)", int), default=None,
                        help="seed of the draws, in [0, 2**63) (default: a new one, printed)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="NAME=VALUE[,NAME=VALUE...]",
                        help="a named set, run besides the drawn ones (repeatable)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help="folder for the sets' runs, set-01, set-02, ... (default %(default)s)")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the table to FILE")
    parser.add_argument("--html", action="store_true", help="also an HTML report in each set's folder")
    parser.add_argument("--jobs", type=ranges.argument_type("[1, inf)", int), default=None,
                        help=f"notebooks run at once (default: one per core, here {execution.cores()})")
    parser.add_argument("--notebook-dir", type=Path, default=None,
                        help="folder of the numbered notebooks (default: the checkout's notebooks/)")


def plan(args, selected: list[Path]) -> tuple[list[Row], int | None]:
    """The rows to run, every set checked against every selected notebook; (rows, the seed of the draws)."""
    named = [draws.check_set(given, selected) for given in args.sets]
    count = args.n if args.n is not None else (0 if named else DEFAULT_COUNT)
    seed = None
    drawn: list[dict] = []
    if count:
        seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
        drawn = draws.draw_sets(seed, count, selected)
    sets = [(f"{k}*", pairs) for k, pairs in enumerate(named, start=1)]
    sets += [(str(k), [(name, draws.text(value)) for name, value in values.items()])
             for k, values in enumerate(drawn, start=len(named) + 1)]
    return [Row(label, pairs, args.output / f"set-{label.rstrip('*'):0>2}") for label, pairs in sets], seed


def cell(run, involved: set[str]) -> str:
    """CRASH, FACTS, the verdict word, or ok."""
    if run.status != "ok":
        return "CRASH"
    if run.source.stem in involved:
        return "FACTS"
    return run.verdict.split(" - ")[0] if run.verdict != "-" else "ok"


def fill(row: Row, outcome: runs.Outcome) -> Row:
    """The row's cells and counts from its run."""
    involved = {n for c in outcome.conflicts for n in (c[1], c[3])} | {n for n, _ in outcome.contradictions}
    row.cells = {run.source.stem[:2]: cell(run, involved) for run in outcome.runs}
    row.crashed = any(run.status != "ok" for run in outcome.runs)
    row.disagreements = list(outcome.problems)
    row.code = outcome.code
    return row


def _parameters(row: Row) -> str:
    return ", ".join(f"{name}={value}" for name, value in row.pairs) or "defaults"


def table(rows: list[Row], numbers: list[str]) -> str:
    """The sweep's table: a row per set, a column per notebook, its parameters last; and the count line."""
    widths = {n: max([len(n), *(len(r.cells.get(n, "-")) for r in rows)]) for n in numbers}
    label_width = max([3, *(len(r.label) for r in rows)])
    legend = ["(* a set named with --set)"] if any(r.label.endswith("*") for r in rows) else []
    header = "  ".join([f"{'set':<{label_width}}", *(f"{n:<{widths[n]}}" for n in numbers), "parameters"])
    lines = [*legend, header]
    for row in rows:
        cells = [f"{row.cells.get(n, '-'):<{widths[n]}}" for n in numbers]
        lines.append("  ".join([f"{row.label:<{label_width}}", *cells, _parameters(row)]))
    lines.append(count_line(rows))
    return "\n".join(lines)


def count_line(rows: list[Row]) -> str:
    clean = sum(r.clean for r in rows)
    crashes = sum(r.crashed for r in rows)
    facts = sum(bool(r.disagreements) for r in rows)
    return f"{len(rows)} sets: {clean} clean, {crashes} with crashes, {facts} with disagreements"


def as_json(rows: list[Row], numbers: list[str], seed: int | None) -> dict:
    return {"seed": seed, "notebooks": numbers,
            "sets": [{"label": r.label, "named": r.label.endswith("*"), "parameters": dict(r.pairs),
                      "output": str(r.output), "cells": r.cells, "crashed": r.crashed,
                      "disagreements": r.disagreements, "exit_code": r.code, "clean": r.clean} for r in rows],
            "summary": count_line(rows)}


def command(args) -> int:
    """`python -m lib sweep`: check every set, run each, print the table; 0 only when all are clean."""
    args.notebook_dir = workbook.notebook_folder(args.notebook_dir)
    selected = workbook.select(workbook.discover(args.notebook_dir), args.notebooks)
    rows, seed = plan(args, selected)  # every set checked before anything is created or started
    workbook.check_output_folder(args.output, args.notebook_dir)
    if args.json is not None:
        workbook.require_writable(args.json.resolve().parent, "the folder of --json")
    if seed is not None:
        print(f"Drawing {sum(not r.label.endswith('*') for r in rows)} parameter set(s) with seed {seed} "
              f"(repeat with --seed {seed})")
    options = SimpleNamespace(jobs=args.jobs or execution.cores(), html=args.html, update_sources=False)
    numbers = [path.name[:2] for path in selected]
    for row in rows:
        print(f"\n=== set {row.label}: {_parameters(row)}", flush=True)
        parameters = workbook.resolve_parameters(selected, row.pairs)
        with processes.output_lock(row.output):
            outcome = runs.run_into(row.output, selected, parameters, row.pairs, options)
        fill(row, outcome)
        if outcome.code >= 128:  # stopped by a signal: the rest does not run
            print(table([r for r in rows if r.code is not None], numbers))
            return outcome.code
    if args.json is not None:
        args.json.write_text(json.dumps(as_json(rows, numbers, seed), indent=1) + "\n", encoding="utf-8")
        print(f"\nTable written to {args.json}")
    print("\n" + (f"Random sets drawn with seed {seed} (repeat with --seed {seed})\n" if seed is not None else "")
          + table(rows, numbers))
    return 0 if all(r.clean for r in rows) else 1

