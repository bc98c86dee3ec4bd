"""Command line: `python -m lib diagnose` and `python -m lib run`."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from lib import _checks, replica, upstream
from lib.replica import twin
from lib.replica.printout import print_diagnostic
from lib.workbook import execution, processes, ranges, runs, sweep
from lib.workbook import runner as workbook

#: A negative number, exponent and all (-1e-5), as a value rather than an option.
NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-inf$")


def _add_diagnose(commands) -> None:
    o = replica.ORIGINAL
    parser = commands.add_parser(
        "diagnose", help="print every number of one run of the original failing test, replicated in numpy",
        description="Run the replica of the original dropout gradient test and print the input, the masks "
                    "of several forward calls, the outputs and, per element, analytical and numerical "
                    "gradients with the nominal and realised step. Exit code 1 when the check fails.")
    parser.add_argument("--dtype", default=o["dtype"], choices=replica.SWITCHES["dtype"], help="input dtype")
    parser.add_argument("--p", type=ranges.argument_type("[0, 1)"), default=None,
                        help="drop probability in [0, 1), and at most 0.999984 in float16, where 1/(1-p) "
                             "must stay finite (default: the test's)")
    parser.add_argument("--seed", type=ranges.argument_type("[0, 2**63)", int), default=o["seed"],
                        help="dropout seed in [0, 2**63); 0 means 'do not seed', as in the original "
                             "(default %(default)s)")
    parser.add_argument("--eps", type=ranges.argument_type("(0, inf)"), default=o["eps"],
                        help="finite-difference step, in (0, inf) (default %(default)s)")
    parser.add_argument("--values", type=ranges.argument_type("(-inf, inf)"), nargs="+", default=None,
                        metavar="X", help="input values, finite numbers (default: the test's)")
    parser.add_argument("--rtol", type=ranges.argument_type("[0, inf)"), default=o["rtol"],
                        help="relative tolerance, in [0, inf) (default %(default)s)")
    parser.add_argument("--atol", type=ranges.argument_type("[0, inf)"), default=o["atol"],
                        help="absolute tolerance, in [0, inf) (default %(default)s)")
    for switch in ("rng", "forward", "backward_mask", "divide_by"):
        choices = replica.SWITCHES[switch]
        parser.add_argument(f"--{switch.replace('_', '-')}", dest=switch, default=choices[0], choices=choices,
                            help=f"replica switch (original: {choices[0]})")
    parser.add_argument("--test", default=o["test"], choices=replica.TESTS,
                        help="which original test (default %(default)s; dropout2d has its own p and input)")
    parser.add_argument("--checker", default=o["checker"], choices=replica.CHECKERS,
                        help="the failure-era checker or the complete fix (default %(default)s)")
    parser.add_argument("--restore-input", action="store_true",
                        help="perturb private copies (the later deep-copy checker) instead of leaking into x")
    parser.add_argument("--calls", type=ranges.argument_type("[1, inf)", int), default=4,
                        help="forward-call masks to print, at least 1 (default %(default)s)")
    # -1e-5 is a value here, not an option: argparse's own pattern knows no exponent before Python 3.13.
    parser._negative_number_matcher = NEGATIVE_NUMBER


def _add_run(commands) -> None:
    parser = commands.add_parser(
        "run", help="run the whole workbook headless with papermill",
        description="Execute the numbered notebooks in order into an output folder and print a summary "
                    "with each notebook's verdict. Sources are never overwritten (except with "
                    "--update-sources, which refreshes their stored outputs).",
        epilog="examples:\n"
               "  python -m lib run                          all notebooks, defaults, into output/\n"
               "  python -m lib run 6 -p dtype=float64       notebook 06 in float64\n"
               "  python -m lib run 1-6 -p p 0.5             notebooks 01 to 06 with p = 0.5 (NAME VALUE works too)\n"
               "  python -m lib run --html --output report   also an HTML report, into report/\n"
               "  python -m lib run --list                   every notebook's parameters and defaults",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", metavar="N",
                        help="notebook numbers or ranges (e.g. 3 6-8); default: all")
    parser.add_argument("-p", "--parameter", nargs=1, action="append", default=[], metavar="NAME=VALUE",
                        help="set parameter NAME in every selected notebook that declares it "
                             "(also -p NAME VALUE; negative numbers are fine)")
    parser.add_argument("--output", type=Path, default=workbook.DEFAULT_OUTPUT, help="folder for executed copies "
                        "(default %(default)s)")
    parser.add_argument("--html", action="store_true", help="also export HTML and an index.html report")
    parser.add_argument("--update-sources", action="store_true",
                        help="re-execute with defaults and store the outputs in the source notebooks")
    parser.add_argument("--jobs", type=int, default=None,
                        help=f"notebooks run at once (default: one per core, here {execution.cores()})")
    parser.add_argument("--list", action="store_true", help="list notebooks and their parameters, run nothing")
    parser.add_argument("--notebook-dir", type=Path, default=None,
                        help="folder of the numbered notebooks (default: the checkout's notebooks/, else ./notebooks)")


def _add_mojo(commands) -> None:
    parser = commands.add_parser(
        "mojo", help="run the Mojo twin of the original tests and compare it with the replica, bit for bit",
        description="Compile and run mojo/twin.mojo with `mojo run` (Mojo 0.25.7, from requirements-mojo.txt), "
                    "compute the same cases with the Python replica, and compare every number by its float64 "
                    "bits. Exit code 1 on any difference, 2 when mojo is not installed.")
    parser.add_argument("--p", type=float, default=None, help="drop probability (default: each test's own)")
    parser.add_argument("--seed", type=int, default=42, help="dropout seed; 0 means 'do not seed' (default 42)")
    parser.add_argument("--eps", type=float, default=1e-5, help="the failure-era checker's step (default 1e-5)")
    parser.add_argument("--record", action="store_true",
                        help=f"store the Mojo run in {twin.RECORDED_RUN.name} for machines without mojo")
    parser.add_argument("--verbose", action="store_true", help="print one line per case")


def _add_upstream(commands) -> None:
    parser = commands.add_parser(
        "upstream", help="run the original library's gradient tests with the fixed Mojo checker",
        description="Copy PATH (a checkout of the original library) to a temporary folder, put the fixed "
                    "checker (mojo/upstream/) in place of its check_gradient, build each gradient test file "
                    "once and run it with the fixed checker, the library's own one and the failure-era "
                    "algorithm, with and without mutated gradients. PATH is never written to. Exit code 0 "
                    "when every gradient test passes with the fixed checker at its original tolerance, "
                    "1 when one does not, 2 on an error.")
    parser.add_argument("path", type=Path, metavar="PATH", help="the original library's checkout")
    parser.add_argument("--history", type=Path, default=None, metavar="GIT_DIR",
                        help="git repository to read the original (27a95c94) tolerances from "
                             "(default: PATH's own, when PATH is a git checkout)")
    parser.add_argument("--commit", default=None, help="PATH's commit, for the report (default: PATH's HEAD)")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE", help="write every number to FILE")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lib",
        description="Investigation workbook for a failing dropout gradient check: run its notebooks, "
                    "replay the original test, compare the replica with Mojo.",
        epilog="examples:\n"
               "  python -m lib run                      every notebook, into output/\n"
               "  python -m lib run 3 6-8 -p seed=0      some notebooks, with a parameter changed\n"
               "  python -m lib run --list               the notebooks and their parameters\n"
               "  python -m lib sweep 1-6 -n 5           notebooks 01 to 06 under 5 random parameter sets\n"
               "  python -m lib diagnose --dtype float64 the original test's numbers in float64\n"
               "  python -m lib mojo                     the Mojo twin against the replica\n"
               "  python -m lib upstream ~/ProjectOdyssey the original's gradient tests, fixed checker\n"
               "'python -m lib COMMAND --help' describes each command.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_diagnose(commands)
    _add_run(commands)
    sweep.add_parser(commands)
    _add_mojo(commands)
    _add_upstream(commands)
    return parser


def _upstream(args) -> int:
    try:
        return upstream.run_upstream(args.path, history_dir=args.history, commit=args.commit,
                                     json_path=args.json)
    except (twin.MojoUnavailable, upstream.BuildFailed) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _mojo(args) -> int:
    if args.p is not None:
        _checks.drop_probability(args.p)
    _checks.positive_int(args.seed, "--seed", low=0, high=2**63 - 1)
    _checks.positive_step(args.eps)
    try:
        mojo = twin.run_twin(p=args.p, seed=args.seed, eps=args.eps)
    except twin.MojoUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    python = twin.replica_document(p=args.p, seed=args.seed, eps=args.eps)
    comparison = twin.compare(mojo, python)
    print(f"{mojo['mojo_version']} against lib.replica (seed={args.seed}, eps={args.eps:g}, "
          f"p={'each test' + chr(39) + 's own' if args.p is None else args.p})")
    if args.verbose:
        for case in mojo["cases"]:
            index = case["first_failing_index"]
            print(f"  {twin.case_label(case):<58} {'passes' if index is None else f'fails at index {index}'}")
    for line in comparison.differences[:40]:
        print(f"  DIFFERENT {line}")
    print(comparison.summary())
    if args.record and comparison.agree:
        settings = {"p": args.p, "seed": args.seed, "eps": args.eps}
        print(f"recorded in {twin.record({**mojo, 'settings': settings})}")
    return 0 if comparison.agree else 1


def _diagnose(args) -> int:
    switches = {name: getattr(args, name) for name in ("test", "checker", "dtype", "seed", "eps", "rtol", "atol",
                                                       "rng", "forward", "backward_mask", "divide_by")}
    if args.p is not None:
        # refused here, naming the bound the dtype allows, rather than run with an infinite scale
        try:
            switches["p"] = _checks.drop_probability_for(args.p, args.dtype)
        except ValueError as error:
            raise ValueError(f"argument --p (with --dtype {args.dtype}): {error}") from None
    if args.values is not None:
        switches["values"] = tuple(args.values)
    switches["restore_input"] = args.restore_input
    return print_diagnostic(calls=args.calls, **switches)


def _list(selected) -> int:
    for path in selected:
        params = workbook.declared_parameters(path)
        described = ", ".join(f"{n}={info['default']}" for n, info in params.items())
        print(f"{path.name:<40} {described}")
    return 0


def _run(args) -> int:
    args.notebook_dir = workbook.notebook_folder(args.notebook_dir)
    notebooks = workbook.discover(args.notebook_dir)
    for path in workbook.skipped(args.notebook_dir):
        print(f"warning: {path.name} is not run: workbook notebooks are named NN_name.ipynb "
              "(two digits, then letters, digits, _ or -)", file=sys.stderr)
    selected = workbook.select(notebooks, args.notebooks)
    if args.list:
        return _list(selected)
    if args.jobs is None:
        args.jobs = execution.cores()
    if args.jobs < 1:
        raise workbook.WorkbookError(f"--jobs must be an integer >= 1; got {args.jobs}")
    if args.update_sources and args.parameter:
        raise workbook.WorkbookError("--update-sources stores default outputs; it cannot be combined with -p")
    pairs = [workbook.split_parameter(p) for p in args.parameter]
    parameters = workbook.resolve_parameters(selected, pairs)  # before anything is created or started
    workbook.check_output_folder(args.output, args.notebook_dir, update_sources=args.update_sources)
    output = args.output / "update" if args.update_sources else args.output

    with processes.output_lock(output):
        return runs.run_into(output, selected, parameters, pairs, args).code


def _joined_parameters(argv: list[str]) -> list[str]:
    """-p NAME VALUE -> -p NAME=VALUE, so that a VALUE such as -1e-5 is not read as an option."""
    out, k = [], 0
    while k < len(argv):
        token = argv[k]
        out.append(token)
        if token in ("-p", "--parameter") and k + 1 < len(argv) and "=" not in argv[k + 1] and k + 2 < len(argv):
            out.append(f"{argv[k + 1]}={argv[k + 2]}")
            k += 3
            continue
        k += 1
    return out


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(_joined_parameters(argv))
    if args.command is None:  # no command: say what there is rather than argparse's one-line complaint
        parser.print_help(sys.stderr)
        return 2
    try:
        commands = {"diagnose": _diagnose, "run": _run, "sweep": sweep.command, "mojo": _mojo,
                    "upstream": _upstream}
        return commands[args.command](args)
    except (workbook.WorkbookError, processes.FolderBusy, ValueError, TypeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `python -m lib diagnose | head`: the reader left early
        # Point stdout at /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
