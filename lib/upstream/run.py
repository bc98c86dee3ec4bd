"""`python -m lib upstream PATH`: the original library's gradient tests, run with the fixed checker.

Order: every check on PATH (layout, history) before anything is copied or built;
then a temporary copy with the checker swapped and each test file's main()
rewritten; each test file built once and its binary run once per configuration
(execute.CONFIGURATIONS); the table; the JSON document; the copy removed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from lib.replica import twin
from lib.upstream import execute, history, layout, prepare, results


def _collect(mojo: str, tree: Path, found: layout.Layout, tests: list, say) -> tuple[dict, dict]:
    """configuration -> {(file, test) -> TestRun}, and the seconds spent building and running."""
    runs: dict = {configuration: {} for configuration in execute.CONFIGURATIONS}
    seconds = {"build": 0.0, "run": 0.0}
    binaries = tree.parent / "bin"
    binaries.mkdir()
    for relative in found.test_files:
        prepare.rewrite_test_file(tree, relative, tests)
    for number, relative in enumerate(found.test_files, start=1):
        start = time.perf_counter()
        binary = execute.build(mojo, tree, relative, binaries)
        built = time.perf_counter()
        seconds["build"] += built - start
        for configuration in execute.CONFIGURATIONS:
            by_test, code = execute.run(binary, tree, configuration)
            runs[configuration].update({(relative, name): run for name, run in by_test.items()})
            if code != 0:
                say(f"  note: {relative.name} under {'/'.join(configuration)} exited with {code}")
        seconds["run"] += time.perf_counter() - built
        say(f"[{number}/{len(found.test_files)}] {relative.as_posix()}: built in {built - start:.1f} s, "
            f"{len(execute.CONFIGURATIONS)} runs in {time.perf_counter() - built:.1f} s")
    return runs, seconds


def document(found: layout.Layout, known: history.History, version: str, records: list, seconds: dict) -> dict:
    counts = results.mutation_counts(records)
    return {
        "commit": known.commit, "layout": found.name, "checker_file": found.checker.as_posix(),
        "mojo_version": version, "tolerance_history": known.note,
        "upstream_algorithm": vars(found.algorithm), "upstream_defaults": found.defaults,
        "configurations": ["/".join(c) for c in execute.CONFIGURATIONS],
        "tests": records, "mutation_counts": counts,
        "never_called_from_main": [r["test"] for r in records if not r["called_from_main"]],
        "verdict_disagreements": results.disagreements(records),
        "passed_ours": sum(r["ours"]["passed"] for r in records), "total": len(records),
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
    }


def run_upstream(path: Path, *, history_dir: Path | None = None, commit: str | None = None,
                 json_path: Path | None = None, say=print) -> int:
    """Run and report; 0 when every gradient test passes with our checker at its original tolerance.

    Raises layout.LayoutError or ValueError (naming the argument) before building anything,
    twin.MojoUnavailable when mojo is missing, execute.BuildFailed when a test file does not build.
    """
    found = layout.detect(Path(path))
    known = history.resolve(found.root, history_dir, commit)
    history.load_originals(known, found.test_files)
    tests = prepare.gradient_tests(found, known)
    if json_path is not None and not Path(json_path).parent.is_dir():
        raise ValueError(f"--json {json_path}: its folder does not exist")
    mojo = twin.find_mojo()
    if mojo is None:
        raise twin.MojoUnavailable("mojo is not installed; `pip install -r requirements-mojo.txt` installs "
                                   f"Mojo {twin.PINNED_MOJO}")
    version = twin.mojo_version(mojo)
    say(f"{found.root} ({known.commit or 'commit unknown'}), layout {found.name}, {version}")
    say(known.note)
    say(f"{len(tests)} gradient tests in {len(found.test_files)} files")
    with prepare.temporary_tree(found) as tree:
        prepare.install_checker(tree, found)
        runs, seconds = _collect(mojo, tree, found, tests, say)
    records = [results.test_record(test, runs) for test in tests]
    say("")
    say(results.table(records))
    say("")
    for line in results.summary_lines(records, results.mutation_counts(records)):
        say(line)
    for line in results.disagreements(records):
        say(f"DISAGREEMENT between the library's own verdict and its re-implementation: {line}")
    if json_path is not None:
        Path(json_path).write_text(json.dumps(document(found, known, version, records, seconds), indent=1) + "\n")
        say(f"JSON: {json_path}")
    return 0 if all(r["ours"]["passed"] for r in records) else 1
