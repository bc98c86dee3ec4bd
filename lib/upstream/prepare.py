"""The temporary copy the tests are built from: the checker swapped, every main() rewritten.

Nothing is written into PATH. The copy holds PATH's shared/ and tests/ only, lives
in the system's temporary folder (never inside this project), and is removed by
the caller (`temporary_tree` is a context manager).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lib.upstream import source
from lib.upstream.history import History
from lib.upstream.layout import COPIED, Layout

#: This project's Mojo files for the copy: the fixed checker, the re-implemented old ones, the dispatcher.
MOJO_DIR = Path(__file__).resolve().parents[2] / "mojo" / "upstream"
FIX = "gradient_check_fix.mojo"
REFERENCE = "reference_checks.mojo"
DISPATCH = "dispatch.mojo.in"
PROJECT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class GradientTest:
    """One test function that calls check_gradient, and how it is judged."""

    file: Path  # relative to the tree's root
    name: str
    called_from_main: bool
    original: tuple[float, float]
    original_source: str


@contextlib.contextmanager
def temporary_tree(layout: Layout):
    """Yield the root of a fresh copy of PATH's shared/ and tests/; removed on exit."""
    base = Path(tempfile.mkdtemp(prefix="lib-upstream-"))
    if base.resolve().is_relative_to(PROJECT) or base.resolve().is_relative_to(layout.root):
        shutil.rmtree(base)
        raise RuntimeError(f"the temporary folder {base} is inside the project or PATH; set TMPDIR elsewhere")
    try:
        tree = base / "tree"
        for folder in COPIED:
            shutil.copytree(layout.root / folder, tree / folder, symlinks=True,
                            ignore=shutil.ignore_patterns(".*", "__pycache__", "*.mojopkg"))
        yield tree
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _literal(text: str) -> str:
    """A default value as written upstream, as a Mojo Float64 literal."""
    return repr(float(text))


def install_checker(tree: Path, layout: Layout) -> None:
    """Rename the library's check_gradient and append the dispatching one beside this project's files."""
    checker = tree / layout.checker
    text = source.rename_function(checker.read_text(encoding="utf-8"), source.CHECKER, source.RENAMED_CHECKER)
    algorithm = layout.algorithm
    dispatch = (MOJO_DIR / DISPATCH).read_text(encoding="utf-8")
    for key, value in {"PACKAGE": layout.package, "EPSILON": _literal(layout.defaults["epsilon"]),
                       "RTOL": _literal(layout.defaults["rtol"]), "ATOL": _literal(layout.defaults["atol"]),
                       "AUTO_EPS": str(algorithm.auto_eps), "RULE_MAX": str(algorithm.rule_max),
                       "LEAK": str(algorithm.leak)}.items():
        dispatch = dispatch.replace(f"@{key}@", value)
    checker.write_text(text + dispatch, encoding="utf-8")
    for name in (FIX, REFERENCE):
        shutil.copyfile(MOJO_DIR / name, checker.parent / name)


def gradient_tests(layout: Layout, history: History) -> list[GradientTest]:
    """Every test_* function that calls check_gradient, in file order, with its original tolerance."""
    tests = []
    for relative in layout.test_files:
        text = (layout.root / relative).read_text(encoding="utf-8", errors="replace")
        reached = source.reachable_from_main(text)
        for site in source.call_sites(text):
            if not site.test.startswith("test_") or any(t.file == relative and t.name == site.test for t in tests):
                continue
            original, where = history.original(relative, site.test)
            tests.append(GradientTest(relative, site.test, site.test in reached, original, where))
    return tests


def rewrite_test_file(tree: Path, relative: Path, tests: list[GradientTest]) -> None:
    """Keep the file's main() as upstream_original_main and append one that runs `tests`."""
    path = tree / relative
    text = source.rename_function(path.read_text(encoding="utf-8"), "main", source.RENAMED_MAIN)
    runs = [(t.name, *t.original) for t in tests if t.file == relative]
    path.write_text(text + source.runner_main(relative.as_posix(), runs), encoding="utf-8")
